"""`python -m ecs`: deploy, observe and destroy the whole stack on AWS with boto3.

The deployer separates planning from applying: `ecs.stack` turns the command line into a
declarative description of every resource (names, tags, ARNs), `ecs.planner` looks each one
up by name and decides create / update / unchanged without changing anything, and
`ecs.applier` carries the plan out, one line of progress per resource.
"""
