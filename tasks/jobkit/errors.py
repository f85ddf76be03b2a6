"""Exceptions a job's record can name in its `error.type`."""


class InvalidJobInput(ValueError):
    """The job's arguments do not match its schema or make no sense.

    Over HTTP and in callbacks its message is shown only when it is public
    (tasks.results.public_errors): the refusals of the job's schema and signature are (they
    say where and which rule, never the value); a job raising it itself passes
    `public=True` to vouch that its message holds no argument value, or its job exposes
    "error". AsyncResult always has the message."""

    def __init__(self, *args: object, public: bool = False) -> None:
        super().__init__(*args)
        self.public = public


class ResultTooLarge(ValueError):
    """The task's result does not fit in a DynamoDB item (400 KB)."""


class ResultNotSerializable(TypeError):
    """The task returned something that is not JSON."""


class PoisonMessage(ValueError):
    """The queue message cannot be run: malformed, or naming an unknown task."""


class JobRevoked(BaseException):
    """The job was revoked while it ran (AsyncResult.revoke, DELETE /jobs/{id}).

    Raised by a progress update (`Progress.update`, `self.update_state`) whose write the
    REVOKED record refused. A BaseException, like KeyboardInterrupt, so that a job's
    `except Exception:` does not swallow it by accident; `finally` blocks still run. The
    job's message is acknowledged and its record stays REVOKED."""
