"""The REST API in API Gateway, imported from the OpenAPI document the shim serves.

The document's SHA-256 is kept as the description of the stage's deployment: the API is
overwritten, and a new deployment made, only when the document differs from the deployed one.
"""

from __future__ import annotations

import hashlib
import json

from ecs.plan import Context, Step
from ecs.retry import Patient, retry_until, role_not_ready
from ecs.stack import STAGE

# API Gateway rejects integration credentials it cannot assume yet (a role made seconds ago).
ROLE_PROPAGATION_SECONDS = 120.0


def build_definition(stack) -> dict:
    """The document the shim serves (api_shim.openapi.build_openapi), for this stack's names:
    the same builder, templates and patterns; API keys required, as the shim with
    JOBS_API_KEYS (tests/test_api_conformance.py compares the two)."""
    import tasks  # noqa: F401 - registers the public jobs the document lists
    from api_shim.openapi import AwsTargets, build_openapi
    from ecs.data import record_seconds

    targets = AwsTargets(region=stack.region, account_id=stack.account_id,
                         queue_name=stack.queue_name, table_name=stack.table_name,
                         role_arn=stack.role_arn(stack.api_role), partition=stack.partition,
                         result_expires=record_seconds(), bucket_name=stack.bucket_name)
    return build_openapi(targets, title=stack.api_name, api_key_required=True)


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
    return {d["id"]: d.get("description", "")
            for page in apigw.get_paginator("get_deployments").paginate(restApiId=api_id)
            for d in page["items"]}


def usage_plan_key_ids(apigw, plan_id: str) -> set[str]:
    return {k["id"] for page in apigw.get_paginator("get_usage_plan_keys").paginate(
        usagePlanId=plan_id) for k in page["items"]}


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
            if plan["name"] == stack.usage_plan_name \
                    and plan.get("tags", {}).get("stack") == stack.name:
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
    if float(throttle.get("throttlingRateLimit", -1)) != float(o.throttle_rate) \
            or int(throttle.get("throttlingBurstLimit", -1)) != o.throttle_burst:
        changes.append("throttling")
    return changes


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

    def put_api(outputs):
        if api is None:
            # Created empty with its tags, so that it is never left untagged; then filled.
            api_id = apigw.create_rest_api(
                name=stack.api_name, description=f"{stack.name} jobs API",
                apiKeySource="HEADER", endpointConfiguration={"types": ["REGIONAL"]},
                tags=stack.tags)["id"]
        else:
            api_id = api["id"]
        # failOnWarnings: an import that API Gateway only half understood (an ignored
        # extension, a template it could not parse) fails here instead of deploying.
        made = retry_until(apigw.put_rest_api, restApiId=api_id, mode="overwrite",
                           failOnWarnings=True, body=json.dumps(document).encode(),
                           retryable=role_not_ready, deadline=ROLE_PROPAGATION_SECONDS,
                           progress=ctx.progress("api gateway rest api", stack.api_name),
                           clock=ctx.clock)
        if made.get("warnings"):
            raise RuntimeError("API Gateway imported the definition with warnings: "
                               + "; ".join(made["warnings"]))
        outputs["api_id"] = api_id
        return None

    steps.append(Step("api gateway rest api", stack.api_name, action, detail,
                      run=None if action == "unchanged" else put_api,
                      outputs={"api_id": api["id"]} if api else {}))

    if stage is None:
        action, changes = "create", []
    else:
        changes = _stage_settled(stage, stack, digest, deployments)
        action = "update" if changes else "unchanged"

    def deploy_stage(outputs):
        api_id = outputs["api_id"]
        current = find_stage(apigw, api_id)
        deployment = None
        if current is None or "definition" in changes:
            deployment = retry_until(
                apigw.create_deployment, restApiId=api_id, description=digest,
                retryable=role_not_ready, deadline=ROLE_PROPAGATION_SECONDS,
                progress=ctx.progress("api gateway stage", STAGE), clock=ctx.clock)["id"]
        if current is None:
            apigw.create_stage(restApiId=api_id, stageName=STAGE, deploymentId=deployment,
                               description=f"{stack.name} jobs API",
                               variables={"jobsTable": stack.table_name}, tags=stack.tags)
        ops = _throttle_ops(stack)
        if deployment and current is not None:
            ops.append({"op": "replace", "path": "/deploymentId", "value": deployment})
        apigw.update_stage(restApiId=api_id, stageName=STAGE, patchOperations=ops)
        return "new deployment" if deployment else None

    steps.append(Step("api gateway stage", STAGE, action, ", ".join(changes),
                      run=None if action == "unchanged" else deploy_stage))

    key = find_api_key(apigw, stack)

    def make_key(outputs):
        made = apigw.create_api_key(name=stack.api_key_name, enabled=True,
                                    description=f"{stack.name} jobs API", tags=stack.tags)
        outputs["api_key_id"] = made["id"]
        return None

    steps.append(Step("api key", stack.api_key_name, "unchanged" if key else "create",
                      run=None if key else make_key,
                      outputs={"api_key_id": key["id"]} if key else {}))

    plan = find_usage_plan(apigw, stack)
    linked = False
    if plan is not None and key is not None:
        linked = key["id"] in usage_plan_key_ids(apigw, plan["id"])
    stage_linked = plan is not None and api is not None and any(
        s.get("apiId") == api["id"] and s.get("stage") == STAGE
        for s in plan.get("apiStages", []))
    if plan is None:
        action, detail = "create", ""
    elif linked and stage_linked:
        action, detail = "unchanged", ""
    else:
        action, detail = "update", "link key and stage"

    def usage_plan(outputs):
        api_id, key_id = outputs["api_id"], outputs["api_key_id"]
        current = find_usage_plan(apigw, stack)
        if current is None:
            current = apigw.create_usage_plan(
                name=stack.usage_plan_name, description=f"{stack.name} jobs API",
                apiStages=[{"apiId": api_id, "stage": STAGE}],
                throttle={"rateLimit": stack.options.throttle_rate,
                          "burstLimit": stack.options.throttle_burst},
                tags=stack.tags)
        elif not any(s.get("apiId") == api_id and s.get("stage") == STAGE
                     for s in current.get("apiStages", [])):
            apigw.update_usage_plan(usagePlanId=current["id"], patchOperations=[
                {"op": "add", "path": "/apiStages", "value": f"{api_id}:{STAGE}"}])
        if key_id not in usage_plan_key_ids(apigw, current["id"]):
            apigw.create_usage_plan_key(usagePlanId=current["id"], keyId=key_id,
                                        keyType="API_KEY")
        return None

    steps.append(Step("usage plan", stack.usage_plan_name, action, detail,
                      run=None if action == "unchanged" else usage_plan))
    return steps
