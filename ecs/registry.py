"""The ECR repository (scan on push, lifecycle policy) and the worker image in it."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from ecs.plan import Call, Context, Do, Step, tag_list

# Keep the last 20 tagged images (rollbacks), drop untagged layers after a week.
LIFECYCLE_POLICY = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "expire untagged images after 7 days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 7,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": "keep the 20 newest images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 20,
                },
                "action": {"type": "expire"},
            },
        ]
    },
    sort_keys=True,
)


def find_repository(ecr, name: str) -> dict | None:
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "RepositoryNotFoundException":
            return None
        raise


def _lifecycle(ecr, name: str) -> str | None:
    try:
        text = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "LifecyclePolicyNotFoundException":
            return None
        raise
    return json.dumps(json.loads(text), sort_keys=True)


def plan_repository(ctx: Context) -> Step:
    stack, ecr = ctx.stack, ctx.clients.ecr
    repo = find_repository(ecr, stack.repository)
    changes = []
    if repo is None:
        action = "create"
    else:
        if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
            changes.append("scan on push")
        if _lifecycle(ecr, stack.repository) != LIFECYCLE_POLICY:
            changes.append("lifecycle policy")
        action = "update" if changes else "unchanged"

    repository = {"repositoryName": stack.repository}
    calls = (
        []
        if action == "unchanged"
        else [
            Call(
                "ecr", "PutLifecyclePolicy", {**repository, "lifecyclePolicyText": LIFECYCLE_POLICY}
            )
        ]
    )
    if repo is None:
        calls.insert(
            0,
            Call(
                "ecr",
                "CreateRepository",
                {
                    **repository,
                    "imageScanningConfiguration": {"scanOnPush": True},
                    "imageTagMutability": "MUTABLE",
                    "tags": tag_list(stack),
                },
            ),
        )
    elif "scan on push" in changes:
        calls.insert(
            0,
            Call(
                "ecr",
                "PutImageScanningConfiguration",
                {**repository, "imageScanningConfiguration": {"scanOnPush": True}},
            ),
        )
    return Step("ecr repository", stack.repository, action, ", ".join(changes), calls)


def plan_delete_repository(ctx: Context) -> Step:
    """With its images (force): they are the stack's own builds."""
    name = ctx.stack.repository
    found = find_repository(ctx.clients.ecr, name)
    return Step(
        "ecr repository",
        name,
        "delete" if found else "absent",
        instructions=[Call("ecr", "DeleteRepository", {"repositoryName": name, "force": True})]
        if found
        else [],
    )


def image_exists(ecr, repository: str, tag: str) -> bool:
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in (
            "ImageNotFoundException",
            "RepositoryNotFoundException",
        ):
            return False
        raise
    return bool(found.get("imageDetails"))


def plan_image(ctx: Context) -> Step:
    stack, builder = ctx.stack, ctx.builder
    given = stack.options.image
    if given:
        ctx.predicted["image"] = given
        return Step(
            "container image", given, "unchanged", "given with --image", outputs={"image": given}
        )
    tag = builder.tag(stack.options.architecture)
    uri = f"{stack.repository_uri}:{tag}"
    ctx.predicted["image"] = uri
    if image_exists(ctx.clients.ecr, stack.repository, tag):
        return Step("container image", uri, "unchanged", "already pushed", outputs={"image": uri})

    def run(outputs):
        builder.build_and_push(ctx.clients.ecr, uri, stack.options.architecture)
        return f"built with {builder.engine_name()} and pushed"

    return Step(
        "container image",
        uri,
        "create",
        "build and push",
        [
            Do(
                f"build {uri} and push it (docker or podman)",
                run,
                (Call("ecr", "GetAuthorizationToken"),),
            )
        ],
        outputs={"image": uri},
    )
