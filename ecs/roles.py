"""IAM roles with one inline policy each and the stack's permissions boundary (documents in
ecs.policies). Every role is created with the boundary, and a role found without it (or
with another) gets it back before anything else of it is changed: the deployer policy
allows changing a stack role only while the boundary is on it."""

from __future__ import annotations

import json
import urllib.parse

from botocore.exceptions import ClientError

from ecs import policies
from ecs.plan import Call, Context, Do, Step, canonical_json, tag_list

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


def role_boundary(role: dict) -> str | None:
    return (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")


def plan_role(
    ctx: Context, name: str, service: str, policy: dict, trust: dict | None = None
) -> Step:
    stack, iam = ctx.stack, ctx.clients.iam
    trust = trust or policies.trust(service, stack)
    boundary = policies.boundary_arn(stack)
    role = get_role(iam, name)
    changes = []
    if role is None:
        action = "create"
    else:
        if role_boundary(role) != boundary:
            changes.append("permissions boundary")
        if canonical_json(_document(role["AssumeRolePolicyDocument"])) != canonical_json(trust):
            changes.append("trust policy")
        current = inline_policy(iam, name)
        if current is None or canonical_json(current) != canonical_json(policy):
            changes.append("permissions")
        action = "update" if changes else "unchanged"

    calls = []
    if role is None:
        calls.append(
            Call(
                "iam",
                "CreateRole",
                {
                    "RoleName": name,
                    "AssumeRolePolicyDocument": json.dumps(trust),
                    "Description": f"{stack.name}: {service}",
                    "PermissionsBoundary": boundary,
                    "Tags": tag_list(stack),
                },
            )
        )
    else:
        # The boundary first: the deployer may change a role only while it is on.
        if "permissions boundary" in changes:
            calls.append(
                Call(
                    "iam",
                    "PutRolePermissionsBoundary",
                    {"RoleName": name, "PermissionsBoundary": boundary},
                )
            )
        if "trust policy" in changes:
            calls.append(
                Call(
                    "iam",
                    "UpdateAssumeRolePolicy",
                    {"RoleName": name, "PolicyDocument": json.dumps(trust)},
                )
            )
    if action != "unchanged":
        calls.append(
            Call(
                "iam",
                "PutRolePolicy",
                {
                    "RoleName": name,
                    "PolicyName": INLINE_POLICY,
                    "PolicyDocument": json.dumps(policy),
                },
            )
        )
    return Step("iam role", name, action, ", ".join(changes), calls)


def plan_delete_role(ctx: Context, name: str) -> Step:
    """Its policies first (inline, and any attached by hand): IAM deletes only a bare role."""
    iam = ctx.clients.iam
    if get_role(iam, name) is None:
        return Step("iam role", name, "absent")
    role = {"RoleName": name}
    calls = [
        Call("iam", "DeleteRolePolicy", {**role, "PolicyName": policy})
        for policy in iam.list_role_policies(**role)["PolicyNames"]
    ]
    calls += [
        Call("iam", "DetachRolePolicy", {**role, "PolicyArn": policy["PolicyArn"]})
        for policy in iam.list_attached_role_policies(**role)["AttachedPolicies"]
    ]
    return Step("iam role", name, "delete", instructions=[*calls, Call("iam", "DeleteRole", role)])


def boundary_document(iam, arn: str) -> dict | None:
    """The default version's document of a managed policy, or None if there is none."""
    try:
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            return None
        raise
    found = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    return _document(found["Document"])


def _replace_default_version(iam, arn: str, document: dict) -> None:
    # A managed policy keeps at most five versions: the oldest non-default one makes room.
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
    if len(versions) >= 5 and old:
        iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)


def plan_boundary(ctx: Context) -> Step:
    """The permissions boundary policy: made if missing, put right if it differs. Both need
    an administrator: the deployer policy may read it, never write it (else its holder
    could widen what the roles it makes may do). `python -m ecs iam-policy` prints it."""
    stack, iam = ctx.stack, ctx.clients.iam
    name, arn = policies.boundary_name(stack), policies.boundary_arn(stack)
    wanted = policies.boundary_policy(stack)
    current = boundary_document(iam, arn)
    if current is None:
        action, detail = "create", ""
    elif canonical_json(current) != canonical_json(wanted):
        action, detail = "update", "document differs"
    else:
        action, detail = "unchanged", ""

    def run(outputs):
        try:
            if current is None:
                iam.create_policy(
                    PolicyName=name,
                    PolicyDocument=json.dumps(wanted),
                    Description=f"{stack.name}: permissions boundary of its roles",
                )
            else:
                _replace_default_version(iam, arn, wanted)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("AccessDenied", "AccessDeniedException"):
                raise
            state = "missing" if current is None else "out of date"
            raise RuntimeError(
                f"the permissions boundary {arn} is {state} and these credentials may not "
                "write it (the deployer policy never may): an "
                f"administrator runs `python -m ecs iam-policy --stack {stack.name}` and "
                "creates or updates it as docs/deploy.md's IAM permissions section says"
            ) from exc
        return None

    calls = (
        (Call("iam", "CreatePolicy", {"PolicyName": name, "PolicyDocument": "..."}),)
        if current is None
        else (
            Call("iam", "DeletePolicyVersion", {"PolicyArn": arn}),
            Call("iam", "CreatePolicyVersion", {"PolicyArn": arn, "SetAsDefault": True}),
        )
    )
    return Step(
        "iam permissions boundary",
        name,
        action,
        detail,
        []
        if action == "unchanged"
        else [Do("write the boundary (an administrator's credentials)", run, calls)],
    )


def plan_delete_boundary(ctx: Context) -> Step:
    """Kept: it is an administrator's to delete (the deployer policy may not), and it grants
    nothing on its own."""
    stack = ctx.stack
    arn = policies.boundary_arn(stack)
    if boundary_document(ctx.clients.iam, arn) is None:
        return Step("iam permissions boundary", policies.boundary_name(stack), "absent")
    return Step(
        "iam permissions boundary",
        policies.boundary_name(stack),
        "kept",
        notes=[f"  (an administrator deletes it: aws iam delete-policy --policy-arn {arn})"],
    )


def plan_roles(ctx: Context) -> list[Step]:
    return [
        plan_role(ctx, name, service, policy) for name, service, policy in policies.roles(ctx.stack)
    ]


def plan_delete_roles(ctx: Context) -> list[Step]:
    return [plan_delete_role(ctx, name) for name, _, _ in policies.roles(ctx.stack)]
