"""The IAM policies an administrator creates for one stack: the deployer's (what whoever runs
`python -m ecs` may do) and the permissions boundary of the stack's roles.

ecs/deployer-policy.json is a template: `${Partition}`, `${Region}`, `${Account}`,
`${Stack}`, `${Repository}` and `${Bucket}` are filled in from the stack, so that every
statement names this stack's resources. IAM takes at most 6,144 characters (whitespace not
counted) in one managed policy, so the deployer's statements are split across as many
policies as that needs; all of them are attached to the deployer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from string import Template

from ecs import policies
from ecs.stack import Stack

TEMPLATE = Path(__file__).with_name("deployer-policy.json")
# IAM's quota for one customer managed policy (its whitespace is not counted).
MANAGED_POLICY_CHARACTERS = 6144


def placeholders(stack: Stack) -> dict[str, str]:
    return {
        "Partition": stack.partition,
        "Region": stack.region,
        "Account": stack.account_id,
        "Stack": stack.name,
        "Repository": stack.repository,
        "Bucket": stack.bucket_name,
    }


def render(stack: Stack) -> dict:
    """The whole deployer policy for this stack, as one document."""
    return json.loads(Template(TEMPLATE.read_text()).substitute(placeholders(stack)))


def size(document: dict) -> int:
    """The characters IAM counts against a policy's quota."""
    return len(json.dumps(document, separators=(",", ":")))


def split(document: dict, limit: int = MANAGED_POLICY_CHARACTERS) -> list[dict]:
    """The statements, in order, in as few documents of at most `limit` characters as they
    fit (a Deny holds across every policy attached to the same identity)."""
    parts: list[dict] = []
    for statement in document["Statement"]:
        if (
            parts
            and size({**parts[-1], "Statement": [*parts[-1]["Statement"], statement]}) <= limit
        ):
            parts[-1]["Statement"].append(statement)
            continue
        part = {"Version": document["Version"], "Statement": [statement]}
        if size(part) > limit:
            raise ValueError(f"statement {statement.get('Sid')} alone is over {limit} characters")
        parts.append(part)
    return parts


def documents(stack: Stack) -> dict[str, dict]:
    """policy name -> document: the boundary, then the deployer's parts."""
    parts = split(render(stack))
    return {
        policies.boundary_name(stack): policies.boundary_policy(stack),
        **{f"{stack.name}-deployer-{i}": part for i, part in enumerate(parts, 1)},
    }


def client_name(stack: Stack) -> str:
    return f"{stack.name}-client"


def show(stack: Stack, out: str | None, echo: Callable[[str], None]) -> None:
    """Print the documents, or write them to `out` with the commands that create them;
    with them the client policy, for the roles of applications that use the stack from
    Python (policies.client_policy)."""
    deployer = documents(stack)
    named = {**deployer, client_name(stack): policies.client_policy(stack)}
    if out is None:
        echo(json.dumps(named, indent=2))
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in named.items():
        (folder / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    echo(f"wrote {', '.join(f'{folder / name}.json' for name in named)}")
    echo(
        "An administrator creates them (the boundary before the first deploy) and attaches "
        "the deployer's to whoever runs python -m ecs:"
    )
    prefix = f"arn:{stack.partition}:iam::{stack.account_id}:policy"
    for name in named:
        echo(
            f"  aws iam create-policy --policy-name {name} "
            f"--policy-document file://{folder / name}.json"
        )
    for name in list(deployer)[1:]:
        echo(f"  aws iam attach-user-policy --user-name YOU --policy-arn {prefix}/{name}")
    echo(
        f"and {client_name(stack)} to the roles of applications that submit, read, list or "
        "revoke jobs from Python:"
    )
    echo(
        f"  aws iam attach-role-policy --role-name APP_ROLE "
        f"--policy-arn {prefix}/{client_name(stack)}"
    )
