"""One owner of the jobs table: only tasks/results sends DynamoDB item requests.

Every read and write of a job, group, chord or lease item is a JobRecords method
(tasks.results.records and the modules it is composed of), so that the record's transitions
(tasks.results.transitions) hold for every writer. This scans the code of tasks/, api_shim/
and ecs/ with `ast` (comments and docstrings cannot fool it) for DynamoDB's item-level
operations: GetItem, PutItem, UpdateItem, DeleteItem, Query, Scan, BatchGetItem,
BatchWriteItem, the Transact* and PartiQL calls, and the resource API's batch_writer.

Not item requests, so not looked for: the table's administration (create_table,
describe_table, update_table, update_time_to_live, delete_table: tasks.ops.provision and
the deployer's ecs/data.py, ecs/destroy.py).

The one other reader and writer is API Gateway itself: GET /jobs/{id}, GET /jobs and
DELETE /jobs/{id} are AWS service integrations, so API Gateway sends the request its
mapping template renders straight to DynamoDB, and no Python of ours runs on that path (the
local shim renders the same templates and sends them as they are). Those templates are the
HTTP API's contract with DynamoDB; tests/test_templates.py and tests/test_revoke.py hold
them to JobRecords' own requests. So exactly one directory of non-Python files may hold
DynamoDB request bodies: the one directory of mapping templates (*.vtl).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("tasks", "api_shim", "ecs", "console")
OWNER = ROOT / "tasks" / "results"

# boto3's client (and resource) method names of the item-level operations.
ITEM_METHODS = frozenset(
    {
        "get_item",
        "put_item",
        "update_item",
        "delete_item",
        "batch_get_item",
        "batch_write_item",
        "transact_get_items",
        "transact_write_items",
        "execute_statement",
        "batch_execute_statement",
        "execute_transaction",
        "batch_writer",
    }
)
# Item operations whose method names other things also have (a URL's `.query`, the gate's
# `scan`): counted when called with a DynamoDB request (its parameters, or `**request`), or
# when the object they belong to is named as a DynamoDB client or table is.
AMBIGUOUS_METHODS = frozenset({"query", "scan"})
REQUEST_PARAMETERS = frozenset(
    {
        "TableName",
        "IndexName",
        "KeyConditionExpression",
        "FilterExpression",
        "ExclusiveStartKey",
        "ScanFilter",
        "KeyConditions",
        "Select",
        "Segment",
        "TotalSegments",
    }
)
CLIENT_WORDS = ("client", "dynamodb", "ddb", "table")
# The same operations by their API names, as getattr, get_paginator or botocore's
# _make_api_call take them.
OPERATION_NAMES = frozenset(
    {
        *ITEM_METHODS,
        *AMBIGUOUS_METHODS,
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
BY_NAME_CALLS = frozenset(
    {"getattr", "get_paginator", "can_paginate", "_make_api_call", "methodcaller"}
)


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def item_requests(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, what) of every DynamoDB item request `source` builds."""
    tree = ast.parse(source, filename)
    found: list[tuple[int, str]] = []
    requests: set[int] = set()  # attributes called with a DynamoDB request
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if any(k.arg is None or k.arg in REQUEST_PARAMETERS for k in node.keywords):
            requests.add(id(node.func))
        if _called_name(node) in BY_NAME_CALLS:
            for arg in node.args:
                if isinstance(arg, ast.Constant) and arg.value in OPERATION_NAMES:
                    found.append((node.lineno, f"{_called_name(node)}({arg.value!r})"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = ast.unparse(node.value).lower()
        if node.attr in ITEM_METHODS or (
            node.attr in AMBIGUOUS_METHODS
            and (id(node) in requests or any(word in owner for word in CLIENT_WORDS))
        ):
            found.append((node.lineno, f".{node.attr}"))
    return sorted(found)


def python_files() -> list[Path]:
    return sorted(
        path
        for top in SCANNED
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_only_the_record_package_sends_item_requests_to_the_jobs_table():
    strays = []
    for path in python_files():
        if path.is_relative_to(OWNER):
            continue
        for line, what in item_requests(path.read_text(encoding="utf-8"), str(path)):
            strays.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not strays, (
        "DynamoDB item requests outside tasks/results (the job record package owns the "
        "jobs table: add a JobRecords method there and call it instead):\n  " + "\n  ".join(strays)
    )


def test_the_record_package_is_where_the_requests_are():
    """The scan finds what it looks for: the owner's own requests (else it proves nothing)."""
    owned = {
        what
        for path in python_files()
        if path.is_relative_to(OWNER)
        for _, what in item_requests(path.read_text(encoding="utf-8"))
    }
    assert {
        ".get_item",
        ".update_item",
        ".put_item",
        ".delete_item",
        ".batch_get_item",
        ".query",
    } <= owned


def test_only_the_mapping_templates_hold_dynamodb_request_bodies():
    """API Gateway's direct DynamoDB integrations (see the module's docstring) are the one
    other reader and writer: their request templates, in one directory, and nowhere else."""
    template_dirs = {path.parent for top in SCANNED for path in (ROOT / top).rglob("*.vtl")}
    assert len(template_dirs) == 1, f"mapping templates in several places: {template_dirs}"
    (templates,) = template_dirs
    bodies = [
        path
        for top in SCANNED
        for path in (ROOT / top).rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and '"TableName"' in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert bodies, "no template sends a request to DynamoDB: the check below proves nothing"
    strays = [str(path.relative_to(ROOT)) for path in bodies if path.parent != templates]
    assert not strays, (
        f"DynamoDB request bodies outside the mapping templates ({templates.relative_to(ROOT)})"
        f": {strays}"
    )


def test_the_scan_sees_calls_and_not_comments():
    source = '''
# client.update_item(TableName="jobs")  a comment is not a request
"""Nor is a docstring: client.put_item(...)"""
client.update_item(TableName="jobs", Key={})
reader = Partition(client.query, "pk")
page = client.get_paginator("query")
op = getattr(client, "delete_item")
answer = self.query(**request)
items = ddb_table.scan()
url = dict(incoming.query)  # a URL's query string
found = gate.scan(parsed, finite=True)  # the message gate's own scan
'''
    assert item_requests(source) == [
        (4, ".update_item"),
        (5, ".query"),
        (6, "get_paginator('query')"),
        (7, "getattr('delete_item')"),
        (8, ".query"),
        (9, ".scan"),
    ]
