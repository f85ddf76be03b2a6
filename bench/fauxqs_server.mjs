// Starts fauxqs (npm) on 127.0.0.1 only; its own CLI listens on every interface.
// Usage: node fauxqs_server.mjs <port> <node_modules dir>
// Queues are looked up by exact URL in fauxqs; we also accept any URL whose last
// path segment names a queue, so clients may reach it through a counting proxy.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [port, modules] = process.argv.slice(2);
const dist = path.join(modules, "fauxqs", "dist");
const { buildApp } = await import(pathToFileURL(path.join(dist, "app.js")).href);
const { SqsStore } = await import(pathToFileURL(path.join(dist, "sqs", "sqsStore.js")).href);

const byUrl = SqsStore.prototype.getQueue;
SqsStore.prototype.getQueue = function getQueue(url) {
  return byUrl.call(this, url) ?? (url ? this.getQueueByName(String(url).split("/").pop()) : undefined);
};

const app = buildApp({ logger: false });
await app.listen({ port: Number(port), host: "127.0.0.1" });
process.stdout.write(`fauxqs listening on 127.0.0.1:${port}\n`);
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => app.close().then(() => process.exit(0)));
