"""Test-only: the first completion-callback enqueue of each job kills its pool process.

Loaded by one test worker (JOBS_EXTRA_MODULES) to show that a worker dying between the
job's terminal write and the callback's enqueue still delivers: the message was not
acknowledged, so SQS hands it out again, the job runs again (its record stays as the
first run wrote it), and this time the callback is enqueued.
"""

from __future__ import annotations

import os
from typing import Any

from tasks import callbacks

_enqueue = callbacks.deliver.apply_async


def _crash_the_first_time(*args: Any, **kwargs: Any) -> Any:
    folder = os.environ.get("CALLBACK_CRASH_DIR")
    job_id = (kwargs.get("kwargs") or {}).get("job_id")
    marker = os.path.join(folder, str(job_id)) if folder else None
    if marker and not os.path.exists(marker):  # once per job
        open(marker, "w").close()
        os._exit(137)  # as an out-of-memory kill would
    return _enqueue(*args, **kwargs)


callbacks.deliver.apply_async = _crash_the_first_time
