"""The completion callbacks' secret under moto: created once by `deploy`, handed to the
worker through ECS `secrets`, readable by the execution role alone, deleted by `destroy`."""

from __future__ import annotations

import json

from tests.test_ecs_deploy import ACCOUNT, aws, engine, progress, run  # noqa: F401
from tests.test_ecs_deployer_policy import _matches


def _secret_calls(aws, operation: str) -> list[dict]:  # noqa: F811
    return [
        r.params for r in aws.requests if r.service == "secretsmanager" and r.operation == operation
    ]


def test_deploy_makes_the_secret_once_and_the_worker_gets_it_by_arn(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert progress(output)["secretsmanager secret"] == "created"
    secret = aws.secretsmanager.describe_secret(SecretId="t1-callback-secret")
    value = aws.secretsmanager.get_secret_value(SecretId="t1-callback-secret")["SecretString"]
    assert len(value) == 64 and value not in output  # random, and never printed
    assert {t["Key"]: t["Value"] for t in secret["Tags"]} == {"stack": "t1", "app": "sqs-jobs"}

    task_def = aws.ecs.describe_task_definition(taskDefinition="t1-worker")["taskDefinition"]
    container = task_def["containerDefinitions"][0]
    assert container["secrets"] == [{"name": "JOBS_CALLBACK_SECRET", "valueFrom": secret["ARN"]}]
    assert "JOBS_CALLBACK_SECRET" not in {e["name"] for e in container["environment"]}

    def statements(role: str) -> list[dict]:
        return aws.iam.get_role_policy(RoleName=role, PolicyName="least-privilege")[
            "PolicyDocument"
        ]["Statement"]

    [reads] = [
        s
        for s in statements("t1-task-execution")
        if any(a.startswith("secretsmanager:") for a in s["Action"])
    ]
    assert reads["Action"] == ["secretsmanager:GetSecretValue"]
    assert _matches(reads["Resource"], secret["ARN"])
    assert not _matches(reads["Resource"], secret["ARN"].replace("t1-callback", "t2-callback"))
    assert not any("secretsmanager" in json.dumps(s) for s in statements("t1-task"))

    code, output = run(aws, engine, "deploy")  # a redeploy keeps the key receivers know
    assert code == 0, output
    assert progress(output)["secretsmanager secret"] == "unchanged"
    assert progress(output)["ecs task definition"] == "unchanged"
    assert (
        aws.secretsmanager.get_secret_value(SecretId="t1-callback-secret")["SecretString"] == value
    )
    assert len(_secret_calls(aws, "CreateSecret")) == 1

    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert progress(output)["secretsmanager secret"] == "deleted"
    assert _secret_calls(aws, "DeleteSecret") == [
        {"SecretId": "t1-callback-secret", "ForceDeleteWithoutRecovery": True}
    ]
    code, output = run(aws, engine, "destroy", "--yes")
    assert progress(output)["secretsmanager secret"] == "absent"
