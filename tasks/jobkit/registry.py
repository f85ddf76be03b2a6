"""Declaring job tasks: a JSON Schema for their keyword arguments, and public or not.

Only public jobs are reachable over HTTP; the API definition (api_shim) is
generated from `public_jobs()`. The worker checks the same schema, so a
`delay()` call with bad arguments fails as clearly as a bad HTTP request, in words that
name the place and the rule but never the value (tasks.jobkit.schema_errors).
Over HTTP a job record shows its error's type, never the fields in HTTP_DETAIL_FIELDS
(arguments may carry personal data, tracebacks show code paths), and the message of an
exception the job raised only when it is public (tasks.results.public_errors), unless the
job lists them in `expose`; Python's AsyncResult always sees everything.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft4Validator

from tasks.jobkit import schedules as schedules_module
from tasks.jobkit.errors import InvalidJobInput, JobRevoked
from tasks.jobkit.schedules import Schedule
from tasks.jobkit.schema_errors import describe_all
from tasks.results.public_errors import note_public
from tasks.results.revoked_mark import revoked_noted

# Record fields GET /jobs/{id} hides unless the job opts in with @job(expose=...).
HTTP_DETAIL_FIELDS = ("traceback", "args", "kwargs", "worker")
# What `expose` may name: those fields, and "error", the messages of the exceptions the job
# raises (written to the record only when shown: tasks.results.public_errors).
EXPOSABLE = ("error", *HTTP_DETAIL_FIELDS)
# A traceback's last line is the exception's message: exposing one shows the other.
SHOWS_ERRORS = frozenset({"error", "traceback"})


@dataclass(frozen=True)
class JobSpec:
    name: str
    schema: dict[str, Any]
    public: bool
    summary: str
    expose: frozenset[str] = frozenset()  # of EXPOSABLE, shown over HTTP
    schedules: tuple[Schedule, ...] = ()  # tasks.jobkit.schedules: fired with no beat


_SPECS: dict[str, JobSpec] = {}


def describe_errors(validator: Draft4Validator, instance: Any) -> list[str]:
    """Readable, stable messages, `field.path: which rule failed`, that never quote the
    value (a job's record and GET /jobs/{id} show them)."""
    return describe_all(validator.iter_errors(instance))


def job_signature(fn: Callable) -> inspect.Signature:
    """The job function's parameters after `self` (jobs are bound tasks)."""
    signature = inspect.signature(fn)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def check_arguments(
    name: str,
    signature: inspect.Signature,
    validator: Draft4Validator,
    args: tuple,
    kwargs: dict[str, Any],
) -> None:
    """Bind Celery's args and kwargs to the job's parameters and check them against the schema.

    The schema sees the arguments by parameter name, without the function's defaults, so
    its `required` holds for positional calls too, and its messages come first (the same
    as over HTTP); what only the binding sees (too many arguments, an argument given twice,
    a keyword the schema allows but the function lacks) follows. Raises InvalidJobInput.
    """
    params = list(signature.parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    arguments: dict[str, Any] = {
        p.name: value for p, value in zip(positional, args, strict=False)
    }  # extras: below
    rest = next((p for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    if rest is not None and len(args) > len(positional):
        arguments[rest.name] = list(args[len(positional) :])
    if arguments.keys() & kwargs.keys():  # given twice: no schema message would say so
        bind(name, signature, args, kwargs)
    problems = describe_errors(validator, {**kwargs, **arguments})
    if problems:
        raise InvalidJobInput("; ".join(problems), public=True)
    bind(name, signature, args, kwargs)


# inspect's binding errors that name only the signature's parameters; the others (an
# unexpected keyword) name what the caller sent.
BIND_ERRORS_NAMING_PARAMETERS = (
    "too many positional arguments",
    "missing a required argument",
    "multiple values for argument",
    "parameter is positional only",
)


def bind(name: str, signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> None:
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        text = str(exc)
        if not any(words in text for words in BIND_ERRORS_NAMING_PARAMETERS):
            text = (
                "got a keyword argument it does not take"
                if "unexpected keyword" in text
                else "the arguments do not fit its parameters"
            )
        given = f" (got {len(args)})" if "too many positional" in text else ""
        raise InvalidJobInput(f"{name}{plain(signature)}: {text}{given}", public=True) from None


def plain(signature: inspect.Signature) -> str:
    """`(x, y=1)`: the parameters without annotations, for error messages."""
    return str(
        signature.replace(
            parameters=[
                p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
            ],
            return_annotation=inspect.Signature.empty,
        )
    )


def job(
    *,
    schema: dict[str, Any],
    public: bool = True,
    summary: str = "",
    expose: Iterable[str] = (),
    schedule: str | Schedule | list | None = None,
    **task_options: Any,
) -> Callable:
    """Register a Celery task whose arguments follow `schema` (JSON Schema draft 4).

    The schema describes the arguments by parameter name: positional ones (`delay(2, 3)`,
    partial signatures, a chain's previous result) are bound to the function's parameters
    before the check, so one schema serves Python calls and HTTP's keyword-only bodies.

    `expose` names what GET /jobs/{id} and callbacks show for this job beyond its error's
    type (none by default): record fields of HTTP_DETAIL_FIELDS, and "error", the messages
    of the exceptions it raises (they may quote its arguments).

    `schedule` fires the job on a schedule: an EventBridge Scheduler expression
    ("rate(15 minutes)", "cron(0 6 * * ? *)"), a `Schedule(expression, kwargs=..., name=...)`,
    or a list of them; expressions and kwargs are checked here (tasks/jobkit/schedules.py).
    """
    Draft4Validator.check_schema(schema)
    exposed = frozenset([expose] if isinstance(expose, str) else expose)
    unknown = exposed - set(EXPOSABLE)
    if unknown:
        raise ValueError(f"expose={sorted(unknown)}: only {EXPOSABLE} can be exposed")
    shows_errors = bool(exposed & SHOWS_ERRORS)
    validator = Draft4Validator(schema)

    def decorate(fn: Callable) -> Any:
        name = task_options.pop("name", f"{fn.__module__}.{fn.__name__}")

        signature = job_signature(fn)
        declared = schedules_module.bind(
            name,
            schedule,
            lambda kwargs: check_arguments(name, signature, validator, (), kwargs),
            fn.__module__,
        )

        @functools.wraps(fn)
        def run(self, *args: Any, **kwargs: Any) -> Any:
            try:
                # Celery passes positional arguments too (delay(2, 3), chains, partials):
                # bind them to the parameters' names, then check the schema on those.
                check_arguments(name, signature, validator, args, kwargs)
                try:
                    result = fn(self, *args, **kwargs)
                except JobRevoked:  # a progress write found the record REVOKED
                    raise self.dropped_as_revoked("while it ran") from None
            except Exception as exc:
                # May GET /jobs/{id} show its message? The backend, writing the failure,
                # reads this verdict from the request (tasks.results.public_errors).
                note_public(
                    self.request,
                    shows_errors
                    or (isinstance(exc, InvalidJobInput) and getattr(exc, "public", False) is True),
                )
                raise
            if revoked_noted(self.request):
                # It saw is_aborted() and returned: a revoked job never succeeds (its
                # result would be refused, and its callbacks must not be sent).
                raise self.dropped_as_revoked("while it ran")
            return result

        from tasks.celery_app import app  # the app imports the job modules: not at the top

        # `expose` on the task too: the worker's callbacks read it from the app they run in.
        task = app.task(
            bind=True, name=name, **{"stops_when_revoked": True, **task_options, "expose": exposed}
        )(run)
        _SPECS[name] = JobSpec(
            name, schema, public, summary or (fn.__doc__ or "").strip(), exposed, declared
        )
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


def all_schedules() -> dict[str, Schedule]:
    """Every registered schedule by its name (the jobs are imported first)."""
    found: dict[str, Schedule] = {}
    for spec in all_jobs().values():
        for item in spec.schedules:
            if item.name in found:
                raise ValueError(
                    f"schedule name {item.name!r} is used by {found[item.name].task}"
                    f" and {item.task}"
                )
            found[item.name] = item
    return dict(sorted(found.items()))
