"""Settings, AWS clients, provisioning and dead-letter tools.

Importable by the shim and `ecs` without the Celery app, the jobs or the worker runtime.
"""
