"""The operator's console: what Flower shows, for Celery on SQS (docs/console.md).

Flower reads worker events and remote control, which SQS cannot carry; everything it shows
is kept here anyway: job records and their listing index (tasks.results), the queue's and
the dead-letter queue's attributes (SQS), the service and alarms (ECS, CloudWatch).

* `sources`: what the views read and do, through small source objects: LocalSource (the
  emulator of `make run`) and AwsSource (a deployed stack, built by `python -m ecs console`);
* `timeline`: a job's public record as the events of its life;
* `web`: the Flask blueprint (server-rendered pages, a JSON endpoint the pages poll, the
  confirmed actions); `app`: a Flask app serving it alone.

It never imports the worker, the shim or the deployer (pyproject.toml's import contracts):
records are read through tasks.results, queues through tasks.ops.
"""
