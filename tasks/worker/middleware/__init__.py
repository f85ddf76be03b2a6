"""The worker's one hook surface: middlewares in a list per app, as dramatiq has them.

    from tasks.celery_app import app
    from tasks.worker.metrics import JobMetrics
    from tasks.worker.middleware import Middleware

    class Timing(Middleware):
        def job_started(self, request): ...
        def run_failed(self, request, exc): ...

    app.middleware.add(Timing(), after=JobMetrics)

`base` defines the hooks (Middleware, Periodic), `stack` the list (add/remove/find and the
calls). The package imports no concrete middleware, and none of them imports it back:
tasks.worker.default_middleware lists the worker's own in order, tasks.worker.celery_hooks
is where Celery calls in.
"""

from tasks.worker.middleware.base import Middleware, Periodic, Rejection, Taken, Verdict
from tasks.worker.middleware.stack import MiddlewareStack, built

__all__ = ["Middleware", "MiddlewareStack", "Periodic", "Rejection", "Taken", "Verdict", "built"]
