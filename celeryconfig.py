"""The Celery configuration, as a module: `app.config_from_object("celeryconfig")`.

The same settings `tasks.app_factory.create_app` gives its apps, built by
tasks.celery_config from `Settings.from_env()` when this module is imported. Importing it
changes nothing in the process environment.
"""

from tasks.celery_config import celery_config
from tasks.ops.settings import Settings

_settings = Settings.from_env()
globals().update(celery_config(_settings))
