"""Exceptions a job's record can name in its `error.type`."""


class InvalidJobInput(ValueError):
    """The job's arguments do not match its schema or make no sense."""


class ResultTooLarge(ValueError):
    """The task's result does not fit in a DynamoDB item (400 KB)."""


class ResultNotSerializable(TypeError):
    """The task returned something that is not JSON."""


class PoisonMessage(ValueError):
    """The queue message cannot be run: malformed, or naming an unknown task."""
