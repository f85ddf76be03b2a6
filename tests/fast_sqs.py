"""fauxqs (npm), a fast SQS-compatible server, on loopback for the load test.

moto's SQS costs about 1 ms per queued message on every receive, so a queue 10,000 deep
crawls; fauxqs answers in constant time. Its own CLI listens on every interface, so we
start it from a few lines of Node that call its `buildApp` and listen on 127.0.0.1 only.

fauxqs speaks SQS's JSON protocol only (what boto3 and kombu 5.7 use). API Gateway's SQS
integration, and so the shim, sends `Action=SendMessage` form-encoded (the query protocol)
to `<endpoint>/<account>/<queue>`: the launcher answers that one action as SQS does, with
fauxqs's own SendMessage behind it.

    with fast_sqs(log_dir) as endpoint: ...   # http://127.0.0.1:<port>

fauxqs is installed with `npm install` into .run/node (git-ignored) on first use;
`npm_modules` and `node_server` also serve tests/fast_dynamodb.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAUXQS_VERSION = "1.9.2"
NODE_DIR = Path(os.environ.get("FAST_SQS_NODE_DIR") or ROOT / ".run" / "node")
ACCOUNT_ID = "000000000000"  # fauxqs puts every queue in this account

# argv: port, node_modules folder. Prints "ready" once listening.
LAUNCHER = r"""
import path from "node:path";
import { pathToFileURL } from "node:url";

const [port, modules] = process.argv.slice(1);
const load = (file) => import(pathToFileURL(path.join(modules, "fauxqs", "dist", file)).href);
const { buildApp } = await load("app.js");
const { SqsStore } = await load("sqs/sqsStore.js");
const { sendMessage } = await load("sqs/actions/sendMessage.js");
const { SqsError } = await load("common/errors.js");

const xml = (s) => String(s).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
const sqsStore = new SqsStore();
sqsStore.host = "";  // queue URLs then name the address clients used: http://127.0.0.1:<port>/...
const app = buildApp({ logger: false, stores: { sqsStore } });

// Query-protocol SendMessage on a queue's own URL, as API Gateway's SQS integration sends it.
app.addHook("preHandler", async (request, reply) => {
  const type = request.headers["content-type"] ?? "";
  const parts = request.url.split("?")[0].split("/").filter(Boolean);
  if (request.method !== "POST" || !type.includes("x-www-form-urlencoded") || parts.length !== 2
      || request.body?.Action !== "SendMessage") return;
  const requestId = crypto.randomUUID();
  reply.header("content-type", "text/xml");
  try {
    const queue = sqsStore.getQueueByName(parts[1]);
    const sent = sendMessage({ QueueUrl: queue?.url ?? request.url,
                               MessageBody: request.body.MessageBody }, sqsStore);
    return reply.send(
      `<SendMessageResponse><SendMessageResult><MessageId>${sent.MessageId}</MessageId>` +
      `<MD5OfMessageBody>${sent.MD5OfMessageBody}</MD5OfMessageBody></SendMessageResult>` +
      `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata>` +
      `</SendMessageResponse>`);
  } catch (err) {
    if (!(err instanceof SqsError)) throw err;
    return reply.status(err.statusCode).send(
      `<ErrorResponse><Error><Type>${err.senderFault ? "Sender" : "Receiver"}</Type>` +
      `<Code>${xml(err.queryErrorHeader.split(";")[0])}</Code>` +
      `<Message>${xml(err.message)}</Message></Error>` +
      `<RequestId>${requestId}</RequestId></ErrorResponse>`);
  }
});

await app.listen({ port: Number(port), host: "127.0.0.1" });
process.stdout.write("ready\n");
const stop = () => app.close().then(() => process.exit(0));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, stop);
"""


def npm_modules(*packages: str) -> Path:
    """The node_modules folder holding `packages` ("name@version"); installs what is missing."""
    modules = NODE_DIR / "node_modules"
    missing = [p for p in packages
               if not (modules / p.rsplit("@", 1)[0] / "package.json").exists()]
    if not missing:
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError(f"Node.js 20+ and npm are needed for {', '.join(missing)}")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                    "--prefix", str(NODE_DIR), *missing],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    return modules


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def node_server(script: str, label: str, modules: Path, log_dir: Path,
                ready_timeout: float = 30) -> Iterator[str]:
    """Run an ES module script with argv (port, node_modules) on a free loopback port.

    The script prints "ready" once it listens. Yields the endpoint URL; stops it afterwards.
    """
    port = _free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", "--input-type=module", "-e", script, str(port), str(modules)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while b"ready" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def fast_sqs(log_dir: Path) -> Iterator[str]:
    """fauxqs on a free loopback port; yields its endpoint URL and stops it afterwards."""
    with node_server(LAUNCHER, "fauxqs", npm_modules(f"fauxqs@{FAUXQS_VERSION}"),
                     log_dir) as endpoint:
        yield endpoint
