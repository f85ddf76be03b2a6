"""The REST API in API Gateway, imported from the OpenAPI document the shim serves.

The document's SHA-256 is kept as the description of the stage's deployment: the API is
overwritten, and a new deployment made, only when the document differs from the deployed one.
"""

from __future__ import annotations

import hashlib
import json

from ecs.plan import Call, Context, Ref, Retry, Step
from ecs.retry import Patient, role_not_ready
from ecs.stack import STAGE

# API Gateway rejects integration credentials it cannot assume yet (a role made seconds ago).
ROLE_PROPAGATION_SECONDS = 120.0


def build_definition(stack) -> dict:
    """The document the shim serves (tasks.http_contract.openapi), for this stack's names:
    the same builder, templates and patterns; API keys required, as the shim with
    JOBS_API_KEYS (tests/test_api_conformance.py compares the two)."""
    from ecs.data import record_seconds
    from tasks.http_contract.forms import AwsTargets
    from tasks.http_contract.openapi import build_openapi
    from tasks.jobkit.registry import all_jobs

    targets = AwsTargets(
        region=stack.region,
        account_id=stack.account_id,
        queue_name=stack.queue_name,
        table_name=stack.table_name,
        role_arn=stack.role_arn(stack.api_role),
        partition=stack.partition,
        result_expires=record_seconds(),
        bucket_name=stack.bucket_name,
        # The workers' shards (their task definition's JOBS_LIST_SHARDS): the same partitions.
        list_shards=stack.worker_settings().list_shards,
    )
    return build_openapi(targets, all_jobs(), title=stack.api_name, api_key_required=True)


def definition_hash(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def find_api(apigw, stack) -> dict | None:
    """The stack's API: by name, confirmed by its stack tag (names are not unique)."""
    for page in apigw.get_paginator("get_rest_apis").paginate():
        for api in page["items"]:
            if api["name"] == stack.api_name and api.get("tags", {}).get("stack") == stack.name:
                return api
    return None


def deployment_digests(apigw, api_id: str) -> dict[str, str]:
    """{deployment id: description} of every deployment: AWS answers 25 a page, and the
    stage's deployment is often not on the first one."""
    return {
        d["id"]: d.get("description", "")
        for page in apigw.get_paginator("get_deployments").paginate(restApiId=api_id)
        for d in page["items"]
    }


def usage_plan_key_ids(apigw, plan_id: str) -> set[str]:
    return {
        k["id"]
        for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan_id)
        for k in page["items"]
    }


def find_stage(apigw, api_id: str) -> dict | None:
    stages = apigw.get_stages(restApiId=api_id)["item"]
    return next((s for s in stages if s["stageName"] == STAGE), None)


def find_api_key(apigw, stack) -> dict | None:
    for page in apigw.get_paginator("get_api_keys").paginate(nameQuery=stack.api_key_name):
        for key in page["items"]:
            if key["name"] == stack.api_key_name and key.get("tags", {}).get("stack") == stack.name:
                return key
    return None


def find_usage_plan(apigw, stack) -> dict | None:
    for page in apigw.get_paginator("get_usage_plans").paginate():
        for plan in page["items"]:
            if (
                plan["name"] == stack.usage_plan_name
                and plan.get("tags", {}).get("stack") == stack.name
            ):
                return plan
    return None


def _throttle_ops(stack) -> list[dict]:
    o = stack.options
    return [
        {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(o.throttle_rate)},
        {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(o.throttle_burst)},
        {"op": "replace", "path": "/variables/jobsTable", "value": stack.table_name},
    ]


def _stage_settled(stage: dict, stack, digest: str, deployments: dict[str, str]) -> list[str]:
    o = stack.options
    changes = []
    if deployments.get(stage.get("deploymentId", "")) != digest:
        changes.append("definition")
    if (stage.get("variables") or {}).get("jobsTable") != stack.table_name:
        changes.append("variables")
    throttle = (stage.get("methodSettings") or {}).get("*/*", {})
    if (
        float(throttle.get("throttlingRateLimit", -1)) != float(o.throttle_rate)
        or int(throttle.get("throttlingBurstLimit", -1)) != o.throttle_burst
    ):
        changes.append("throttling")
    return changes


def _refuse_warnings(answer: dict) -> None:
    # failOnWarnings fails an import API Gateway only half understood (an ignored
    # extension, a template it could not parse); this catches what it lets through.
    if answer.get("warnings"):
        raise RuntimeError(
            "API Gateway imported the definition with warnings: " + "; ".join(answer["warnings"])
        )


def plan_api(ctx: Context) -> list[Step]:
    stack = ctx.stack
    apigw = Patient(ctx.clients.apigateway)
    document = build_definition(stack)
    digest = definition_hash(document)
    api = find_api(apigw, stack)
    steps: list[Step] = []
    # The digest of the deployed definition is the description of the stage's deployment.
    stage = find_stage(apigw, api["id"]) if api else None
    deployments = deployment_digests(apigw, api["id"]) if api else {}
    deployed = deployments.get(stage.get("deploymentId", "")) if stage else None
    if api is None:
        action, detail = "create", ""
    elif deployed != digest:
        action, detail = "update", "definition changed" if deployed else "not deployed"
    else:
        action, detail = "unchanged", ""
    retry = Retry(role_not_ready, ROLE_PROPAGATION_SECONDS)
    api_id = Ref("api_id")
    calls = (
        []
        if action == "unchanged"
        else [
            Call(
                "apigateway",
                "PutRestApi",
                {
                    "restApiId": api_id,
                    "mode": "overwrite",
                    "failOnWarnings": True,
                    "body": json.dumps(document).encode(),
                },
                retry=retry,
                verify=_refuse_warnings,
            )
        ]
    )
    if api is None:
        # Created empty with its tags, so that it is never left untagged; then filled.
        calls.insert(
            0,
            Call(
                "apigateway",
                "CreateRestApi",
                {
                    "name": stack.api_name,
                    "description": f"{stack.name} jobs API",
                    "apiKeySource": "HEADER",
                    "endpointConfiguration": {"types": ["REGIONAL"]},
                    "tags": stack.tags,
                },
                record={"api_id": "id"},
            ),
        )
    steps.append(
        Step(
            "api gateway rest api",
            stack.api_name,
            action,
            detail,
            calls,
            outputs={"api_id": api["id"]} if api else {},
        )
    )

    if stage is None:
        action, changes = "create", []
    else:
        changes = _stage_settled(stage, stack, digest, deployments)
        action = "update" if changes else "unchanged"
    calls, ops = [], _throttle_ops(stack)
    if stage is None or "definition" in changes:
        calls.append(
            Call(
                "apigateway",
                "CreateDeployment",
                {"restApiId": api_id, "description": digest},
                record={"deployment_id": "id"},
                retry=retry,
            )
        )
        if stage is not None:
            ops.append({"op": "replace", "path": "/deploymentId", "value": Ref("deployment_id")})
    if stage is None:
        calls.append(
            Call(
                "apigateway",
                "CreateStage",
                {
                    "restApiId": api_id,
                    "stageName": STAGE,
                    "deploymentId": Ref("deployment_id"),
                    "description": f"{stack.name} jobs API",
                    "variables": {"jobsTable": stack.table_name},
                    "tags": stack.tags,
                },
            )
        )
    calls.append(
        Call(
            "apigateway",
            "UpdateStage",
            {"restApiId": api_id, "stageName": STAGE, "patchOperations": ops},
        )
    )
    steps.append(
        Step(
            "api gateway stage",
            STAGE,
            action,
            ", ".join(changes),
            [] if action == "unchanged" else calls,
            done="new deployment" if len(calls) > 1 else None,
        )
    )

    key = find_api_key(apigw, stack)
    steps.append(
        Step(
            "api key",
            stack.api_key_name,
            "unchanged" if key else "create",
            "",
            []
            if key
            else [
                Call(
                    "apigateway",
                    "CreateApiKey",
                    {
                        "name": stack.api_key_name,
                        "enabled": True,
                        "description": f"{stack.name} jobs API",
                        "tags": stack.tags,
                    },
                    record={"api_key_id": "id"},
                )
            ],
            outputs={"api_key_id": key["id"]} if key else {},
        )
    )

    plan = find_usage_plan(apigw, stack)
    linked = False
    if plan is not None and key is not None:
        linked = key["id"] in usage_plan_key_ids(apigw, plan["id"])
    stage_linked = (
        plan is not None
        and api is not None
        and any(
            s.get("apiId") == api["id"] and s.get("stage") == STAGE
            for s in plan.get("apiStages", [])
        )
    )
    if plan is None:
        action, detail = "create", ""
    elif linked and stage_linked:
        action, detail = "unchanged", ""
    else:
        action, detail = "update", "link key and stage"
    plan_id = Ref("usage_plan_id") if plan is None else plan["id"]
    calls = []
    if plan is None:
        calls.append(
            Call(
                "apigateway",
                "CreateUsagePlan",
                {
                    "name": stack.usage_plan_name,
                    "description": f"{stack.name} jobs API",
                    "apiStages": [{"apiId": api_id, "stage": STAGE}],
                    "throttle": {
                        "rateLimit": stack.options.throttle_rate,
                        "burstLimit": stack.options.throttle_burst,
                    },
                    "tags": stack.tags,
                },
                record={"usage_plan_id": "id"},
            )
        )
    elif not stage_linked:
        calls.append(
            Call(
                "apigateway",
                "UpdateUsagePlan",
                {
                    "usagePlanId": plan_id,
                    "patchOperations": [
                        {"op": "add", "path": "/apiStages", "value": Ref("api_id", "{}:" + STAGE)}
                    ],
                },
            )
        )
    if not linked:
        calls.append(
            Call(
                "apigateway",
                "CreateUsagePlanKey",
                {"usagePlanId": plan_id, "keyId": Ref("api_key_id"), "keyType": "API_KEY"},
            )
        )
    steps.append(
        Step(
            "usage plan",
            stack.usage_plan_name,
            action,
            detail,
            [] if action == "unchanged" else calls,
        )
    )
    return steps


def plan_delete_api(ctx: Context) -> list[Step]:
    """The usage plan (unlinked from its stages first: API Gateway refuses it otherwise),
    the key, then the API with its stage and deployments."""
    stack = ctx.stack
    apigw = Patient(ctx.clients.apigateway)
    plan = find_usage_plan(apigw, stack)
    calls = []
    if plan:
        ops = [
            {"op": "remove", "path": "/apiStages", "value": f"{s['apiId']}:{s['stage']}"}
            for s in plan.get("apiStages", [])
        ]
        if ops:
            calls.append(
                Call(
                    "apigateway",
                    "UpdateUsagePlan",
                    {"usagePlanId": plan["id"], "patchOperations": ops},
                )
            )
        calls.append(Call("apigateway", "DeleteUsagePlan", {"usagePlanId": plan["id"]}))
    key = find_api_key(apigw, stack)
    rest = find_api(apigw, stack)
    return [
        Step(
            "usage plan", stack.usage_plan_name, "delete" if plan else "absent", instructions=calls
        ),
        Step(
            "api key",
            stack.api_key_name,
            "delete" if key else "absent",
            instructions=[Call("apigateway", "DeleteApiKey", {"apiKey": key["id"]})] if key else [],
        ),
        Step(
            "api gateway rest api",
            stack.api_name,
            "delete" if rest else "absent",
            instructions=[Call("apigateway", "DeleteRestApi", {"restApiId": rest["id"]})]
            if rest
            else [],
        ),
    ]
