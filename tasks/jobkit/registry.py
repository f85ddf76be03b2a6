"""Declaring job tasks: a JSON Schema for their keyword arguments, and public or not.

Only public jobs are reachable over HTTP; the API definition (api_shim) is
generated from `public_jobs()`. The worker checks the same schema, so a
`delay()` call with bad arguments fails as clearly as a bad HTTP request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft4Validator

from tasks.jobkit.errors import InvalidJobInput


@dataclass(frozen=True)
class JobSpec:
    name: str
    schema: dict[str, Any]
    public: bool
    summary: str


_SPECS: dict[str, JobSpec] = {}


def describe_errors(validator: Draft4Validator, instance: Any) -> list[str]:
    """Readable, stable messages: `field.path: what is wrong`."""
    messages = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(body)"
        messages.append(f"{where}: {error.message}")
    return messages


def job(
    *, schema: dict[str, Any], public: bool = True, summary: str = "", **task_options: Any
) -> Callable:
    """Register a Celery task whose keyword arguments follow `schema` (JSON Schema draft 4)."""
    Draft4Validator.check_schema(schema)
    validator = Draft4Validator(schema)

    def decorate(fn: Callable) -> Any:
        name = task_options.pop("name", f"{fn.__module__}.{fn.__name__}")

        @functools.wraps(fn)
        def run(self, *args: Any, **kwargs: Any) -> Any:
            problems = describe_errors(validator, kwargs)
            if problems:
                raise InvalidJobInput("; ".join(problems))
            return fn(self, *args, **kwargs)

        from tasks.celery_app import app  # the app imports the job modules: not at the top

        task = app.task(bind=True, name=name, **task_options)(run)
        _SPECS[name] = JobSpec(name, schema, public, summary or (fn.__doc__ or "").strip())
        return task

    return decorate


def _load_jobs() -> None:
    import tasks.celery_app  # noqa: F401  (importing the app registers every job module)


def public_jobs() -> dict[str, JobSpec]:
    _load_jobs()
    return {name: spec for name, spec in sorted(_SPECS.items()) if spec.public}


def all_jobs() -> dict[str, JobSpec]:
    _load_jobs()
    return dict(sorted(_SPECS.items()))
