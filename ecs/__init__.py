"""`python -m ecs`: deploy, observe and destroy the whole stack on AWS with boto3.

The deployer separates planning from applying: `ecs.stack` turns the command line into a
declarative description of every resource (names, tags, ARNs), a planner per resource looks
it up by name and decides create / update / unchanged without changing anything, and
`ecs.plan.apply` carries the plan out, one line of progress per resource. `ecs.rollout` adds
the checks of a rolling deploy (the service stable, a smoke task of a new revision) before
the API is touched; `ecs.retry` waits wherever AWS documents eventual consistency.
"""
