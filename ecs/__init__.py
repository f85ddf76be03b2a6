"""`python -m ecs`: deploy, observe and destroy the whole stack on AWS with boto3.

The deployer separates planning from applying: `ecs.stack` turns the command line into a
declarative description of every resource (names, tags, ARNs); `ecs.resources` lists the
resource kinds in dependency order, each module with a planner for deploy and one for
destroy, which look the resource up and return a step as data (ecs.plan: the action and the
AWS calls it makes); `ecs.executor` carries a plan out, one line of progress per resource,
or only shows it (`plan`, `destroy --dry-run`). `ecs.rollout` adds
the checks of a rolling deploy (the service stable, a smoke task of a new revision) before
the API is touched; `ecs.retry` waits wherever AWS documents eventual consistency.
"""
