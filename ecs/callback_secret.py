"""The completion callbacks' signing key: one AWS Secrets Manager secret per stack.

`deploy` creates it once, with a random value made here (never printed, never logged, never
compared: an existing secret is left as it is, so redeploys keep the key receivers know).
The worker's task definition gets it through ECS `secrets` (valueFrom: the secret's ARN) as
JOBS_CALLBACK_SECRET, which the task *execution* role reads (secretsmanager:GetSecretValue
on this secret only); the worker's own code never calls Secrets Manager. Rotate it with
`aws secretsmanager put-secret-value` and a redeploy (`ecs deploy` then starts new tasks
only when the definition changes: `aws ecs update-service --force-new-deployment`).

`destroy` deletes it at once (ForceDeleteWithoutRecovery): like the queues, the secret
belongs to the stack, and a recovery window would keep its name taken, so a stack
re-deployed under the same name within the window would fail to create it.
"""

from __future__ import annotations

import secrets

from botocore.exceptions import ClientError

from ecs.plan import Call, Context, Do, Step, tag_list

ENV_NAME = "JOBS_CALLBACK_SECRET"
# The ARN is only known once the secret exists (Secrets Manager adds a random suffix).
NEW_SECRET = "(the new secret's ARN)"


def describe_secret(secretsmanager, name: str) -> dict | None:
    try:
        return secretsmanager.describe_secret(SecretId=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def container_secrets(secret_arn: str | None) -> list[dict[str, str]]:
    """The container definition's `secrets`: the key as JOBS_CALLBACK_SECRET."""
    return [{"name": ENV_NAME, "valueFrom": secret_arn}] if secret_arn else []


def plan_callback_secret(ctx: Context) -> Step:
    stack, sm = ctx.stack, ctx.clients.secretsmanager
    found = describe_secret(sm, stack.callback_secret_name)
    kind = "secretsmanager secret"
    if found is not None and not found.get("DeletedDate"):
        ctx.predicted["callback_secret_arn"] = found["ARN"]
        return Step(
            kind,
            stack.callback_secret_name,
            "unchanged",
            outputs={"callback_secret_arn": found["ARN"]},
        )
    ctx.predicted["callback_secret_arn"] = found["ARN"] if found else NEW_SECRET
    if found is not None:  # scheduled for deletion (by hand, with a recovery window)

        def refuse(outputs):
            raise RuntimeError(
                f"secret {stack.callback_secret_name} is scheduled for deletion; restore it "
                f"(aws secretsmanager restore-secret --secret-id {stack.callback_secret_name})"
                " or delete it for good, then deploy again"
            )

        return Step(
            kind,
            stack.callback_secret_name,
            "update",
            "scheduled for deletion: restore it first",
            [Do("stop: the secret is scheduled for deletion", refuse)],
        )

    # The value is made when the call is made, and shown nowhere (not in a plan either).
    def create(outputs):
        made = sm.create_secret(
            Name=stack.callback_secret_name,
            Description=f"{stack.name}: HMAC key of completion callbacks (X-Signature)",
            SecretString=secrets.token_hex(32),
            Tags=tag_list(stack),
        )
        outputs["callback_secret_arn"] = made["ARN"]
        return "random value; read it with aws secretsmanager get-secret-value"

    return Step(
        kind,
        stack.callback_secret_name,
        "create",
        instructions=[
            Do(
                "create the secret with a random value",
                create,
                (
                    Call(
                        "secretsmanager",
                        "CreateSecret",
                        {
                            "Name": stack.callback_secret_name,
                            "SecretString": "(random, never shown)",
                            "Tags": tag_list(stack),
                        },
                    ),
                ),
            )
        ],
    )


def plan_delete_callback_secret(ctx: Context) -> Step:
    name = ctx.stack.callback_secret_name
    found = describe_secret(ctx.clients.secretsmanager, name)
    return Step(
        "secretsmanager secret",
        name,
        "delete" if found else "absent",
        instructions=[
            Call(
                "secretsmanager",
                "DeleteSecret",
                {"SecretId": name, "ForceDeleteWithoutRecovery": True},
            )
        ]
        if found
        else [],
    )
