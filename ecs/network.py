"""Where the workers run: subnets (the default VPC's unless given) and a security group
that lets nothing in (workers only call out, to SQS, DynamoDB, ECR and CloudWatch)."""

from __future__ import annotations

from ecs.plan import Call, Context, Retry, Step, tag_list
from ecs.retry import interfaces_not_released


def default_vpc(ec2) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise RuntimeError("this region has no default VPC: pass --subnets subnet-a,subnet-b")
    return vpcs[0]["VpcId"]


def resolve_subnets(ec2, given: tuple[str, ...]) -> tuple[str, list[str]]:
    """(vpc id, subnet ids): the given subnets (all in one VPC) or the default VPC's."""
    if given:
        found = ec2.describe_subnets(SubnetIds=list(given))["Subnets"]
        vpcs = {s["VpcId"] for s in found}
        if len(vpcs) != 1:
            raise ValueError(f"--subnets must all be in one VPC, got {sorted(vpcs)}")
        return vpcs.pop(), sorted(given)
    vpc = default_vpc(ec2)
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    if not subnets:
        raise RuntimeError(f"the default VPC {vpc} has no default subnets: pass --subnets")
    return vpc, sorted(s["SubnetId"] for s in subnets)


def security_group_name(stack) -> str:
    return f"{stack.name}-worker"


def find_security_groups(ec2, stack, vpc: str | None = None) -> list[dict]:
    filters = [
        {"Name": "group-name", "Values": [security_group_name(stack)]},
        {"Name": "tag:stack", "Values": [stack.name]},
    ]
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    return ec2.describe_security_groups(Filters=filters)["SecurityGroups"]


# Fargate releases a stopped task's network interface within minutes.
INTERFACE_RELEASE_SECONDS = 300.0


def plan_network(ctx: Context) -> Step:
    stack, ec2 = ctx.stack, ctx.clients.ec2
    vpc, subnets = resolve_subnets(ec2, stack.options.subnets)
    ctx.predicted["subnets"] = ",".join(subnets)
    found = find_security_groups(ec2, stack, vpc)
    group = found[0] if found else None
    name = security_group_name(stack)
    if group is not None:
        ctx.predicted["security_group"] = group["GroupId"]
        return Step(
            "security group",
            f"{name} ({group['GroupId']})",
            "unchanged",
            outputs={"security_group": group["GroupId"], "subnets": ",".join(subnets)},
        )
    ctx.predicted["security_group"] = "(new)"
    create = Call(
        "ec2",
        "CreateSecurityGroup",
        {
            "GroupName": name,
            "VpcId": vpc,
            "Description": f"{stack.name} workers: no inbound traffic, outbound to AWS APIs",
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": tag_list(stack)}],
        },
        record={"security_group": "GroupId"},
    )
    return Step(
        "security group",
        name,
        "create",
        f"in {vpc}",
        [create],
        outputs={"subnets": ",".join(subnets)},
        done="{security_group}",
    )


def plan_delete_network(ctx: Context) -> list[Step]:
    """One group per VPC the stack has used."""
    groups = find_security_groups(ctx.clients.ec2, ctx.stack)
    name = security_group_name(ctx.stack)
    if not groups:
        return [Step("security group", name, "absent")]
    # The stopped tasks' network interfaces linger for a few minutes after the service is
    # gone; until they are released AWS answers DependencyViolation.
    wait = Retry(interfaces_not_released, INTERFACE_RELEASE_SECONDS, base=10.0, cap=10.0)
    return [
        Step(
            "security group",
            f"{name} ({g['GroupId']})",
            "delete",
            instructions=[
                Call("ec2", "DeleteSecurityGroup", {"GroupId": g["GroupId"]}, retry=wait)
            ],
        )
        for g in groups
    ]
