"""IAM roles with one inline policy each (documents in ecs.policies)."""

from __future__ import annotations

import json
import urllib.parse

from botocore.exceptions import ClientError

from ecs import policies
from ecs.plan import Context, Step, canonical_json

INLINE_POLICY = "least-privilege"


def _document(value) -> dict:
    # boto3 decodes policy documents to dicts; some emulators return URL-encoded JSON text.
    if isinstance(value, str):
        return json.loads(urllib.parse.unquote(value))
    return value


def get_role(iam, name: str) -> dict | None:
    try:
        return iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            return None
        raise


def inline_policy(iam, role: str, name: str = INLINE_POLICY) -> dict | None:
    try:
        return _document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            return None
        raise


def plan_role(ctx: Context, name: str, service: str, policy: dict,
              trust: dict | None = None) -> Step:
    stack, iam = ctx.stack, ctx.clients.iam
    trust = trust or policies.trust(service, stack)
    role = get_role(iam, name)
    changes = []
    if role is None:
        action = "create"
    else:
        if canonical_json(_document(role["AssumeRolePolicyDocument"])) != canonical_json(trust):
            changes.append("trust policy")
        current = inline_policy(iam, name)
        if current is None or canonical_json(current) != canonical_json(policy):
            changes.append("permissions")
        action = "update" if changes else "unchanged"

    def run(outputs):
        if role is None:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                            Description=f"{stack.name}: {service}",
                            Tags=[{"Key": k, "Value": v} for k, v in stack.tags.items()])
        elif "trust policy" in changes:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY,
                            PolicyDocument=json.dumps(policy))
        return None

    return Step("iam role", name, action, ", ".join(changes),
                run=None if action == "unchanged" else run)


def plan_roles(ctx: Context) -> list[Step]:
    return [plan_role(ctx, name, service, policy)
            for name, service, policy in policies.roles(ctx.stack)]
