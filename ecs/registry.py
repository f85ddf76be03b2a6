"""The ECR repository (scan on push, lifecycle policy) and the worker image in it."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from ecs.image import ImageBuilder
from ecs.plan import Context, Step

# Keep the last 20 tagged images (rollbacks), drop untagged layers after a week.
LIFECYCLE_POLICY = json.dumps({"rules": [
    {"rulePriority": 1, "description": "expire untagged images after 7 days",
     "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                   "countUnit": "days", "countNumber": 7},
     "action": {"type": "expire"}},
    {"rulePriority": 2, "description": "keep the 20 newest images",
     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
     "action": {"type": "expire"}},
]}, sort_keys=True)


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

    def run(outputs):
        if repo is None:
            ecr.create_repository(
                repositoryName=stack.repository,
                imageScanningConfiguration={"scanOnPush": True},
                imageTagMutability="MUTABLE",
                tags=[{"Key": k, "Value": v} for k, v in stack.tags.items()])
        elif "scan on push" in changes:
            ecr.put_image_scanning_configuration(
                repositoryName=stack.repository, imageScanningConfiguration={"scanOnPush": True})
        ecr.put_lifecycle_policy(repositoryName=stack.repository,
                                 lifecyclePolicyText=LIFECYCLE_POLICY)
        return ", ".join(changes) or None

    return Step("ecr repository", stack.repository, action, ", ".join(changes),
                run=None if action == "unchanged" else run)


def image_exists(ecr, repository: str, tag: str) -> bool:
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ImageNotFoundException",
                                             "RepositoryNotFoundException"):
            return False
        raise
    return bool(found.get("imageDetails"))


def plan_image(ctx: Context, builder: ImageBuilder) -> Step:
    stack = ctx.stack
    given = stack.options.image
    if given:
        ctx.predicted["image"] = given
        return Step("container image", given, "unchanged", "given with --image",
                    outputs={"image": given})
    tag = builder.tag(stack.options.architecture)
    uri = f"{stack.repository_uri}:{tag}"
    ctx.predicted["image"] = uri
    if image_exists(ctx.clients.ecr, stack.repository, tag):
        return Step("container image", uri, "unchanged", "already pushed",
                    outputs={"image": uri})

    def run(outputs):
        builder.build_and_push(ctx.clients.ecr, uri, stack.options.architecture)
        return f"built with {builder.engine_name()} and pushed"

    return Step("container image", uri, "create", "build and push", run=run,
                outputs={"image": uri})
