// Starts dynalite (npm, an independent DynamoDB implementation) in memory on 127.0.0.1.
// Usage: node dynalite_server.mjs <port> <node_modules dir>
// dynalite has no Time to Live API, which both workers' provisioning call (ours:
// UpdateTimeToLive; stock Celery's backend: DescribeTimeToLive, then UpdateTimeToLive):
// answered here from an in-memory setting per table. Nothing expires within a run anyway.
import path from "node:path";
import { createRequire } from "node:module";

const [port, modules] = process.argv.slice(2);
const dynalite = createRequire(path.join(modules, "noop.js"))("dynalite");
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
const [handle] = server.listeners("request");
server.removeAllListeners("request");

const ttl = new Map(); // table name -> TimeToLiveSpecification
const answer = (res, body) => {
  res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
  res.end(JSON.stringify(body));
};
server.on("request", (req, res) => {
  const action = String(req.headers["x-amz-target"]).split(".").pop();
  if (action !== "UpdateTimeToLive" && action !== "DescribeTimeToLive") return handle(req, res);
  let raw = "";
  req.on("data", (chunk) => { raw += chunk; });
  req.on("end", () => {
    const body = JSON.parse(raw || "{}");
    if (action === "UpdateTimeToLive") {
      ttl.set(body.TableName, body.TimeToLiveSpecification ?? {});
      return answer(res, { TimeToLiveSpecification: body.TimeToLiveSpecification ?? {} });
    }
    const spec = ttl.get(body.TableName);
    return answer(res, { TimeToLiveDescription: spec?.Enabled
      ? { TimeToLiveStatus: "ENABLED", AttributeName: spec.AttributeName }
      : { TimeToLiveStatus: "DISABLED" } });
  });
});
server.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`dynalite listening on 127.0.0.1:${port}\n`);
});
const stop = () => server.close(() => process.exit(0));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, stop);
