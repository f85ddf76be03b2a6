// Starts fauxqs (npm) on 127.0.0.1 only; its own CLI listens on every interface.
// Usage: node fauxqs_server.mjs <port> <node_modules dir>
// Queues are looked up by exact URL in fauxqs; we also accept any URL whose last
// path segment names a queue, so clients may reach it through a counting proxy.
// fauxqs speaks SQS's JSON protocol only; API Gateway's SQS integration, and so the
// API shim, POSTs `Action=SendMessage` form-encoded (the query protocol) to the
// queue's URL: that one action is answered here as SQS does, with fauxqs behind it.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [port, modules] = process.argv.slice(2);
const load = (file) => import(pathToFileURL(path.join(modules, "fauxqs", "dist", file)).href);
const { buildApp } = await load("app.js");
const { SqsStore } = await load("sqs/sqsStore.js");
const { sendMessage } = await load("sqs/actions/sendMessage.js");
const { SqsError } = await load("common/errors.js");

const byUrl = SqsStore.prototype.getQueue;
SqsStore.prototype.getQueue = function getQueue(url) {
  return byUrl.call(this, url) ?? (url ? this.getQueueByName(String(url).split("/").pop()) : undefined);
};

const xml = (s) => String(s).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
const sqsStore = new SqsStore();
sqsStore.host = "";  // queue URLs then name the address clients used: http://127.0.0.1:<port>/...
const app = buildApp({ logger: false, stores: { sqsStore } });

app.addHook("preHandler", async (request, reply) => {
  const type = request.headers["content-type"] ?? "";
  const parts = request.url.split("?")[0].split("/").filter(Boolean);
  if (request.method !== "POST" || !type.includes("x-www-form-urlencoded") || parts.length !== 2
      || request.body?.Action !== "SendMessage") return;
  const requestId = crypto.randomUUID();
  reply.header("content-type", "text/xml");
  try {
    const sent = sendMessage({ QueueUrl: request.url, MessageBody: request.body.MessageBody },
                             sqsStore);
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
process.stdout.write(`fauxqs listening on 127.0.0.1:${port}\n`);
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => app.close().then(() => process.exit(0)));
