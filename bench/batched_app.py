"""`celery -A tasks worker` with tasks.sqs_transport selected: the "after" of the speed-ups.

Equivalent to adding `broker_transport = "tasks.sqs_transport:Transport"` to celeryconfig;
the benchmark also passes --prefetch-multiplier so that one receive asks for 10 messages.
"""

from tasks import app

app.conf.broker_transport = "tasks.sqs_transport:Transport"

__all__ = ["app"]
