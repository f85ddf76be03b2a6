// The console's pages refresh themselves. The Now view polls /api/now, /api/chart and
// /api/metrics every POLL_MS for the range chosen (last hour or day); the dead-letters page
// polls /api/redrive while SQS moves messages. "updated N s ago" counts from the last answer
// that arrived (it grows, and turns red, while the endpoints do not answer).
"use strict";

const POLL_MS = 5000;
const COLOURS = { SUCCESS: "#12b76a", FAILURE: "#d92d20", REVOKED: "#98a2b3" };
const DURATION_COLOURS = ["#84caff", "#1570ef", "#fdb022", "#dc6803"];
const charts = {};
let updatedAt = Date.now();
let range = "hour";

function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

function paragraph(text, className) {
  const item = document.createElement("p");
  item.textContent = text;
  item.className = className || "";
  return item;
}

function showService(service) {
  const box = document.getElementById("service");
  if (!service) return;
  const lines = [paragraph(`workers: running ${service.running}, desired ${service.desired}, pending ${service.pending}`)];
  for (const d of service.deploying) {
    let text = `deployment ${d.status} of ${d.task_definition}: ${d.rollout || "?"}, running ${d.running} of ${d.desired}`;
    if (d.failed) text += `, ${d.failed} failed task(s)`;
    lines.push(paragraph(text, `deployment${d.failed || d.rollout === "FAILED" ? " bad" : ""}`));
  }
  box.replaceChildren(...lines);
}

function showNow(view) {
  setText("n-visible", view.queue.visible);
  setText("n-in-flight", view.queue.in_flight);
  setText("n-delayed", view.queue.delayed);
  setText("n-oldest", view.oldest_age === null ? "n/a" : `${view.oldest_age} s`);
  setText("n-dlq", view.dlq);
  setText("n-failures", `${view.failures_last_hour}${view.failures_capped ? "+" : ""}`);
  document.getElementById("box-dlq").classList.toggle("bad", view.dlq > 0);
  document.getElementById("box-failures").classList.toggle("bad", view.failures_last_hour > 0);
  const list = document.getElementById("attention");
  list.replaceChildren(...view.attention.map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
  showService(view.service);
  const alarms = document.getElementById("alarms");
  alarms.replaceChildren(...view.alarms.map((alarm) => {
    const row = document.createElement("tr");
    row.className = alarm.state === "ALARM" ? "bad" : "";
    for (const text of [alarm.state, alarm.name, alarm.reason]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

// One chart per canvas: made on the first answer, its data replaced on the next ones.
function draw(id, type, labels, datasets, options) {
  const canvas = document.getElementById(id);
  if (charts[id] && charts[id].config.type === type && charts[id].data.datasets.length === datasets.length) {
    charts[id].data.labels = labels;
    charts[id].data.datasets.forEach((set, i) => { set.data = datasets[i].data; set.label = datasets[i].label; });
    charts[id].update();
  } else {
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart(canvas, {
      type, data: { labels, datasets },
      options: { animation: false, maintainAspectRatio: false, ...options },
    });
  }
  return canvas;
}

function showChart(data) {
  const datasets = Object.entries(data.series).map(([status, counts]) => ({
    label: status, data: counts, backgroundColor: COLOURS[status] || "#666",
  }));
  const canvas = draw("finished-chart", "bar", data.minutes, datasets, {
    scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
  });
  canvas.dataset.total = data.total;
  const span = data.range === "day" ? "the last day" : "the last hour";
  setText("chart-note", `${data.total} job(s) finished in ${span}` +
    (data.capped ? " (capped: the newest only)" : ""));
}

function showMetrics(data) {
  draw("depth-chart", "line", data.depth.labels, [{
    label: "waiting", data: data.depth.values, borderColor: "#1570ef", spanGaps: true, pointRadius: 2,
  }], { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } });
  const series = Object.entries(data.durations.series).map(([label, values], i) => ({
    label, data: values, backgroundColor: DURATION_COLOURS[i % DURATION_COLOURS.length],
  }));
  const canvas = draw("durations-chart", "bar", data.durations.labels, series, {
    scales: { y: { beginAtZero: true, title: { display: true, text: "seconds" } } },
  });
  canvas.dataset.tasks = data.durations.labels.length;
  setText("metrics-note", `from ${data.source === "cloudwatch" ? "CloudWatch" : "the records"}; ` +
    `${data.durations.labels.length} task(s) with runs in range` + (data.capped ? " (capped)" : ""));
}

async function json(url) {
  const answer = await fetch(url);
  if (!answer.ok) {
    // The console's JSON errors say what went wrong (the emulator down, a refused call).
    const said = await answer.json().then((body) => body.error, () => null);
    throw new Error(said || `HTTP ${answer.status} from ${url}`);
  }
  return answer.json();
}

async function pollNow() {
  const now = document.getElementById("now");
  const chartApi = document.getElementById("finished-chart").dataset.api;
  const metricsApi = document.getElementById("depth-chart").dataset.api;
  try {
    const [view, chart, metrics] = await Promise.all([
      json(now.dataset.api), json(`${chartApi}?range=${range}`), json(`${metricsApi}?range=${range}`),
    ]);
    showNow(view);
    showChart(chart);
    showMetrics(metrics);
    updatedAt = Date.now();
  } catch (err) {
    setText("chart-note", `not updated: ${err.message}`);
  }
}

async function pollRedrive() {
  const node = document.getElementById("redrive-progress");
  try {
    const { progress } = await json(node.dataset.api);
    if (progress) {
      let text = `last redrive (${progress.started}): ${progress.status}, moved ${progress.moved}`;
      if (progress.to_move !== null) text += ` of ${progress.to_move}`;
      if (progress.failure) text += `: ${progress.failure}`;
      node.textContent = text;
      node.classList.toggle("bad", progress.status === "FAILED");
    }
    updatedAt = Date.now();
  } catch (err) {
    node.dataset.error = err.message;
  }
}

function tick() {
  const seconds = Math.round((Date.now() - updatedAt) / 1000);
  setText("updated", `updated ${seconds} s ago`);
  const node = document.getElementById("updated");
  if (node) node.classList.toggle("bad", seconds > 3 * POLL_MS / 1000);
}

function chooseRange(event) {
  event.preventDefault();
  range = event.target.dataset.range;
  for (const link of document.querySelectorAll(".ranges a")) {
    link.classList.toggle("current", link.dataset.range === range);
  }
  document.querySelector(".per-range").textContent = range === "day" ? "per 15 minutes" : "per minute";
  pollNow();
}

const poll = document.getElementById("now") ? pollNow
  : document.getElementById("redrive-progress") ? pollRedrive : null;
if (poll) {
  for (const link of document.querySelectorAll(".ranges a")) link.addEventListener("click", chooseRange);
  poll();
  setInterval(poll, POLL_MS);
  setInterval(tick, 1000);
}
