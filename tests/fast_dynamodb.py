"""dynalite (npm), an independent DynamoDB implementation, on loopback for the load test.

At load, moto's server spends about 9 ms of CPU on each of our conditional UpdateItem
calls (measured here: 2,000 jobs, 4,000 writes, 37 CPU-seconds), which alone caps the
pipeline near 40 jobs/s on two cores; dynalite takes under 1 ms for the same writes.

dynalite has no UpdateTimeToLive, which `tasks.ops.provision.ensure_table` calls: the launcher
acknowledges it (TTL never expires anything within a test) and passes everything else
through. It listens on 127.0.0.1 only, in memory.

    with fast_dynamodb(log_dir) as endpoint: ...   # http://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.fast_sqs import node_server, npm_modules

DYNALITE_VERSION = "4.0.0"

# argv: port, node_modules folder. Prints "ready" once listening.
LAUNCHER = r"""
import path from "node:path";
import { createRequire } from "node:module";

const [port, modules] = process.argv.slice(1);
const dynalite = createRequire(path.join(modules, "noop.js"))("dynalite");
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
const [handle] = server.listeners("request");
server.removeAllListeners("request");
server.on("request", (req, res) => {
  if (!String(req.headers["x-amz-target"]).endsWith(".UpdateTimeToLive")) return handle(req, res);
  let body = "";
  req.on("data", (chunk) => { body += chunk; });
  req.on("end", () => {
    const spec = JSON.parse(body || "{}").TimeToLiveSpecification ?? {};
    res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
    res.end(JSON.stringify({ TimeToLiveSpecification: spec }));
  });
});
server.listen(Number(port), "127.0.0.1", () => process.stdout.write("ready\n"));
const stop = () => server.close(() => process.exit(0));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, stop);
"""


@contextlib.contextmanager
def fast_dynamodb(log_dir: Path) -> Iterator[str]:
    """dynalite on a free loopback port; yields its endpoint URL and stops it afterwards."""
    with node_server(LAUNCHER, "dynalite", npm_modules(f"dynalite@{DYNALITE_VERSION}"),
                     log_dir) as endpoint:
        yield endpoint
