"""The worker's Celery application; `celery -A tasks worker` finds it as `tasks.app`.

Made by tasks.app_factory from the environment's Settings (`app.settings`); it registers
the job modules JOBS_MODULES names (the shipped ones by default) and JOBS_EXTRA_MODULES.
"""

from tasks.app_factory import create_app, register_jobs

app = create_app(role="worker")
# Registering the jobs needs `app` defined above: each job module imports it.
register_jobs(app.settings)
