// The jobs page: talks only to GET /tasks, POST /tasks/{name}, GET /jobs/{id}, DELETE
// /jobs/{id} (cancel) and GET /jobs?status= (recent jobs), so it works against the local shim and a deployed API Gateway alike
// (set the base URL and API key).
"use strict";

const TERMINAL = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
const POLL_MS = 600;
const HISTORY_KEY = "sqsjobs.jobs";
const $ = (id) => document.getElementById(id);

const state = { tasks: [], task: null, jsonEdited: false, currentId: null, pollTimer: null };

// --- settings -----------------------------------------------------------------------------
function baseUrl() {
  return (localStorage.getItem("sqsjobs.baseUrl") || "").replace(/\/+$/, "");
}
function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const key = localStorage.getItem("sqsjobs.apiKey");
  if (key) h["x-api-key"] = key;
  return h;
}
async function api(path, options) {
  const response = await fetch(baseUrl() + path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return { status: response.status, ok: response.ok, body };
}
function describeError(res) {
  const body = res.body || {};
  const lines = [`${res.status}: ${body.message || "request failed"}`];
  (body.errors || []).forEach((e) => lines.push("• " + e));
  return lines.join("\n");
}

// --- the task form, generated from the task's JSON Schema ------------------------------------
function fieldKind(prop) {
  const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
  if (type === "integer" || type === "number") return type;
  if (type === "boolean") return "boolean";
  if (type === "array" || type === "object") return "json";
  if (type === "string" && (!prop.maxLength || prop.maxLength > 200)) return "text";
  return "string";
}

function exampleFor(task, name, prop) {
  if (prop.default !== undefined) return prop.default;
  const examples = {
    text: "Celery workers take jobs from SQS. Each job writes its state to DynamoDB! " +
          "The page polls the job until it finishes.",
    document: "# Intro\nQueues decouple the request from the work.\n\n# Workers\n" +
              "Workers scale with the backlog. They report progress as they go.",
    records: [{ name: "ada lovelace", email: "ADA@Example.com", country: "uk" }],
    x: 2, y: 3, seconds: 3, message: "this job failed on purpose",
  };
  return examples[name];
}

function buildForm(task) {
  const fields = $("fields");
  fields.replaceChildren();
  const schema = task.schema || {};
  const required = new Set(schema.required || []);
  Object.entries(schema.properties || {}).forEach(([name, prop]) => {
    const kind = fieldKind(prop);
    const label = document.createElement("label");
    label.append(name);
    if (required.has(name)) {
      const star = document.createElement("span");
      star.className = "req"; star.textContent = "*"; label.append(star);
    }
    let input;
    const example = exampleFor(task, name, prop);
    if (kind === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = example === true;
      label.prepend(input);
    } else if (kind === "text" || kind === "json") {
      input = document.createElement("textarea");
      input.rows = kind === "json" ? 5 : 4;
      input.spellcheck = kind !== "json";
      if (example !== undefined) {
        input.value = kind === "json" ? JSON.stringify(example, null, 2) : example;
      }
    } else {
      input = document.createElement("input");
      input.type = kind === "string" ? "text" : "number";
      if (kind === "integer") input.step = "1";
      if (kind === "number") input.step = "any";
      if (prop.minimum !== undefined) input.min = prop.minimum;
      if (prop.maximum !== undefined) input.max = prop.maximum;
      if (example !== undefined) input.value = example;
    }
    input.name = name;
    input.dataset.kind = kind;
    input.dataset.required = required.has(name) ? "1" : "";
    input.addEventListener("input", syncPreview);
    input.addEventListener("change", syncPreview);
    if (kind !== "boolean") label.append(input);
    const hint = [prop.description, prop.minimum !== undefined && prop.maximum !== undefined
      ? `${prop.minimum}–${prop.maximum}` : null].filter(Boolean).join(" · ");
    if (hint) { const small = document.createElement("small"); small.textContent = hint; label.append(small); }
    fields.append(label);
  });
  state.jsonEdited = false;
  syncPreview();
}

function formValues() {
  const values = {};
  const problems = [];
  $("fields").querySelectorAll("[name]").forEach((input) => {
    const { kind, required } = input.dataset;
    const raw = input.type === "checkbox" ? input.checked : input.value;
    if (kind === "boolean") { values[input.name] = raw; return; }
    if (raw === "") { if (required) problems.push(`${input.name}: required`); return; }
    if (kind === "integer" || kind === "number") {
      const n = Number(raw);
      if (!Number.isFinite(n) || (kind === "integer" && !Number.isInteger(n))) {
        problems.push(`${input.name}: not ${kind === "integer" ? "an integer" : "a number"}`);
      } else values[input.name] = n;
    } else if (kind === "json") {
      try { values[input.name] = JSON.parse(raw); } catch (e) { problems.push(`${input.name}: not valid JSON`); }
    } else values[input.name] = raw;
  });
  return { values, problems };
}

function syncPreview() {
  if (state.jsonEdited) return;
  const { values } = formValues();
  $("json-preview").value = JSON.stringify(values, null, 2);
}

function requestBody() {
  if (state.jsonEdited) {
    const text = $("json-preview").value;
    try { JSON.parse(text); } catch (e) { return { problems: ["request body: not valid JSON"] }; }
    return { text, problems: [] };
  }
  const { values, problems } = formValues();
  return { text: JSON.stringify(values), problems };
}

function selectTask(name) {
  state.task = state.tasks.find((t) => t.name === name) || state.tasks[0];
  if (!state.task) return;
  $("task-select").value = state.task.name;
  $("task-summary").textContent = state.task.summary || "";
  buildForm(state.task);
}

async function loadTasks() {
  const res = await api("/tasks", { headers: headers() }).catch((e) => ({ status: 0, body: { message: String(e) } }));
  if (!res.ok) { showFormError("Could not load the task list. " + describeError(res)); return; }
  showFormError("");
  state.tasks = res.body.tasks || [];
  const select = $("task-select");
  select.replaceChildren(...state.tasks.map((t) => new Option(t.name, t.name)));
  const wanted = location.hash.slice(1) || "tasks.text.analyze";
  selectTask(state.tasks.some((t) => t.name === wanted) ? wanted : state.tasks[0]?.name);
}

function showFormError(message) {
  const el = $("form-error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function submitJob(event) {
  event.preventDefault();
  showFormError("");
  const { text, problems } = requestBody();
  if (problems.length) { showFormError(problems.join("\n")); return; }
  const button = $("submit-button");
  button.disabled = true;
  try {
    const callbackUrl = $("callback-url").value.trim();  // X-Callback-Url: a completion callback
    const extra = { "Content-Type": "application/json" };
    if (callbackUrl) extra["X-Callback-Url"] = callbackUrl;
    // Idempotency-Key: resubmitting the same arguments after a network error reuses the key,
    // so a POST that did arrive is not run twice; any answer ends the key's use.
    const attempt = state.task.name + "\n" + callbackUrl + "\n" + text;
    if (!state.submitKey || state.submitKey.attempt !== attempt) {
      state.submitKey = window.crypto && crypto.randomUUID
        ? { attempt, key: crypto.randomUUID() } : null;
    }
    if (state.submitKey) extra["Idempotency-Key"] = state.submitKey.key;
    const res = await api("/tasks/" + encodeURIComponent(state.task.name), {
      method: "POST", headers: headers(extra), body: text,
    });
    state.submitKey = null;
    if (res.status !== 202) { showFormError(describeError(res)); return; }
    const job = { id: res.body.job_id, task: state.task.name, submitted: new Date().toISOString(),
                  status: "PENDING", callback: !!callbackUrl };
    saveHistory([job, ...history().filter((j) => j.id !== job.id)].slice(0, 50));
    showJob(job.id);
  } catch (e) {
    showFormError("Network error: " + e);
  } finally {
    button.disabled = false;
  }
}

// --- the job view --------------------------------------------------------------------------
function showJob(id) {
  clearTimeout(state.pollTimer);
  state.currentId = id;
  $("job-empty").hidden = true;
  $("job-view").hidden = false;
  $("job-id").textContent = id;
  $("cancel-note").hidden = true;
  const known = history().find((j) => j.id === id);
  renderJob({ job_id: id, status: "PENDING", task: known?.task });
  renderHistory();
  poll(id);
}

async function poll(id) {
  if (state.currentId !== id) return;
  let res;
  try { res = await api("/jobs/" + encodeURIComponent(id), { headers: headers() }); } catch (e) {
    res = { status: 0, body: { message: String(e) } };
  }
  if (state.currentId !== id) return;
  if (res.ok) {
    renderJob(res.body);
    updateHistory(id, res.body.status);
    // A finished job with a callback asked for: keep watching until it is delivered or given up.
    const asked = history().find((j) => j.id === id)?.callback;
    const cb = res.body.callback;
    const waiting = asked ? !cb || cb.state === "pending" : cb?.state === "pending";
    const done = res.body.finished_at && Date.now() - Date.parse(res.body.finished_at) > 20 * 60e3;
    if (TERMINAL.has(res.body.status) && (!waiting || done)) return;  // retries end in 15 min
  } else if (res.status >= 400 && res.status < 500) {
    renderJob({ job_id: id, status: "FAILURE", error: { type: "HTTP " + res.status, message: res.body?.message || "" } });
    return;
  }
  state.pollTimer = setTimeout(() => poll(id), POLL_MS);
}

function renderJob(job) {
  const status = job.status || "PENDING";
  const badge = $("job-status");
  badge.textContent = status;
  badge.className = "badge " + status;
  $("cancel-button").hidden = TERMINAL.has(status);  // pending or running only
  $("job-task").textContent = job.task ? `${job.task}${job.worker ? " · on " + job.worker : ""}` : "";

  const progress = job.progress;
  const showBar = status === "PROGRESS" || status === "STARTED" || status === "SUCCESS" || !!progress;
  $("progress").hidden = !showBar || status === "FAILURE";
  let percent = 0;
  let text = status === "STARTED" ? "started" : "";
  if (progress && progress.total) {
    percent = Math.round((100 * progress.current) / progress.total);
    text = `${progress.message || ""} (${progress.current}/${progress.total})`.trim();
  }
  if (status === "SUCCESS") { percent = 100; text = "done"; }
  const fill = $("progress-fill");
  fill.style.width = percent + "%";
  fill.setAttribute("aria-valuenow", String(percent));
  $("progress-text").textContent = text;

  const err = $("job-error");
  if (job.error) {
    err.textContent = `${job.error.type || "Error"}: ${job.error.message || ""}`;
    err.hidden = false;
  } else err.hidden = true;
  $("job-traceback").hidden = !job.traceback;
  $("traceback-text").textContent = job.traceback || "";

  const result = $("job-result");
  const download = $("result-download");
  download.hidden = !(status === "SUCCESS" && job.result_url);
  $("result-json").hidden = !download.hidden;
  if (status === "SUCCESS" && job.result_url) {  // too large for the record: kept in S3
    download.textContent = `download result (${job.result_bytes ?? "?"} bytes)`;
    download.dataset.url = job.result_url;
    download.dataset.job = job.job_id || state.currentId || "result";
    result.hidden = false;
  } else if (status === "SUCCESS") {
    $("result-json").textContent = JSON.stringify(job.result, null, 2);
    result.hidden = false;
  } else result.hidden = true;

  const cb = job.callback;  // {state, attempts, host, last_status, last_error, ...}: never the URL
  const cbLine = $("job-callback");
  cbLine.hidden = !cb;
  if (cb) {
    const parts = [`Callback ${cb.state}`, cb.host ? `to ${cb.host}` : "",
                   `after ${cb.attempts ?? 0} attempt(s)`,
                   cb.last_status ? `last answer ${cb.last_status}` : "",
                   cb.last_error ? `— ${cb.last_error}` : ""];
    cbLine.textContent = parts.filter(Boolean).join(" ");
    cbLine.className = cb.state === "failed" || cb.state === "refused" ? "error" : "hint";
  }

  const times = $("job-times");
  times.replaceChildren();
  [["created", job.created_at], ["started", job.started_at], ["finished", job.finished_at],
   ["attempts", job.attempts]].forEach(([k, v]) => {
    if (v === undefined || v === null) return;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = typeof v === "string" ? new Date(v).toLocaleString() : String(v);
    times.append(dt, dd);
  });
}

// GET /jobs/{id}/result behind the API key: a plain link cannot send x-api-key, so the
// page fetches it and saves the body. result_url keeps the stage: resolve it on the base's
// origin (the shim's own origin when no base is set).
async function downloadResult(event) {
  event.preventDefault();
  const link = event.currentTarget;
  const url = new URL(link.dataset.url, baseUrl() || window.location.origin);
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) {
    link.textContent = `download failed: ${response.status}`;
    return;
  }
  const blob = new Blob([await response.arrayBuffer()], { type: "application/json" });
  const save = document.createElement("a");
  save.href = URL.createObjectURL(blob);
  save.download = `${link.dataset.job}.json`;
  save.click();
  setTimeout(() => URL.revokeObjectURL(save.href), 60e3);
}

// DELETE /jobs/{id}: 200 with the record (REVOKED), 409 with it when the job had finished.
async function cancelJob() {
  const id = state.currentId;
  if (!id) return;
  const button = $("cancel-button");
  const note = $("cancel-note");
  button.disabled = true;
  try {
    const res = await api("/jobs/" + encodeURIComponent(id), { method: "DELETE", headers: headers() });
    if (state.currentId !== id) return;
    if (res.status === 200 || res.status === 409) {
      renderJob(res.body);
      updateHistory(id, res.body.status);
      note.textContent = res.status === 200
        ? "Revoked: a queued job will not run; a running one stops at its next progress step."
        : `Not cancelled: the job had already finished (${res.body.status}).`;
    } else {
      note.textContent = "Could not cancel. " + describeError(res);
    }
  } catch (e) {
    note.textContent = "Network error: " + e;
  } finally {
    button.disabled = false;
    note.hidden = false;
  }
}

// --- jobs submitted from this browser -------------------------------------------------------
function history() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; }
}
function saveHistory(jobs) { localStorage.setItem(HISTORY_KEY, JSON.stringify(jobs)); renderHistory(); }
function updateHistory(id, status) {
  const jobs = history();
  const job = jobs.find((j) => j.id === id);
  if (job && job.status !== status) { job.status = status; saveHistory(jobs); }
}
function renderHistory() {
  const jobs = history();
  const body = $("history");
  body.replaceChildren(...jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    if (job.id === state.currentId) row.className = "current";
    const badge = document.createElement("span");
    badge.className = "badge " + job.status; badge.textContent = job.status;
    const id = document.createElement("code");
    id.textContent = job.id;
    const cells = [new Date(job.submitted).toLocaleTimeString(), job.task, badge, id];
    cells.forEach((c) => {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c;
      row.append(td);
    });
    row.addEventListener("click", () => showJob(job.id));
    return row;
  }));
  $("history-empty").hidden = jobs.length > 0;
}

// --- everyone's jobs by status (GET /jobs) --------------------------------------------------
// One GET /jobs answers the status's newest jobs (one partition a status by default). With
// JOBS_LIST_SHARDS above 1 a page is one shard: the view follows `next` while it is the start
// of another shard ("v1|<shard>||", base64url: the shard before it had no more), then merges
// the pages newest first.
const RECENT_LIMIT = 20;
const MAX_SHARDS = 16;
function shardStart(next) {
  try { return /^v1\|[0-9a-f]\|\|$/.test(atob(next.replace(/-/g, "+").replace(/_/g, "/"))); }
  catch (e) { return false; }
}
async function loadRecent() {
  const status = $("recent-status").value;
  const pages = [];
  let cursor = null;
  while (pages.length < MAX_SHARDS) {
    const query = new URLSearchParams({ status, limit: String(RECENT_LIMIT) });
    if (cursor) query.set("cursor", cursor);
    const res = await api("/jobs?" + query, { headers: headers() })
      .catch((e) => ({ status: 0, ok: false, body: { message: String(e) } }));
    pages.push(res);
    cursor = res.ok ? res.body.next : null;
    if (!cursor || !shardStart(cursor)) break;
  }
  const failed = pages.find((res) => !res.ok);
  $("recent-error").hidden = !failed;
  if (failed) $("recent-error").textContent = describeError(failed);
  const jobs = pages.filter((res) => res.ok).flatMap((res) => res.body.jobs)
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0))
    .slice(0, RECENT_LIMIT);
  $("recent").replaceChildren(...jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.id = job.job_id;
    const badge = document.createElement("span");
    badge.className = "badge " + job.status; badge.textContent = job.status;
    const id = document.createElement("code");
    id.textContent = job.job_id;
    [new Date(job.created_at).toLocaleString(), job.task || "", badge, id].forEach((c) => {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c;
      row.append(td);
    });
    row.addEventListener("click", () => showJob(job.job_id));
    return row;
  }));
  $("recent-empty").hidden = jobs.length > 0 || Boolean(failed);
}

// --- wiring ---------------------------------------------------------------------------------
function init() {
  $("base-url").value = localStorage.getItem("sqsjobs.baseUrl") || "";
  $("api-key").value = localStorage.getItem("sqsjobs.apiKey") || "";
  $("connection-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("sqsjobs.baseUrl", $("base-url").value.trim());
    localStorage.setItem("sqsjobs.apiKey", $("api-key").value.trim());
    $("connection").open = false;
    loadTasks();
    loadRecent();
  });
  $("task-select").addEventListener("change", (e) => { location.hash = e.target.value; selectTask(e.target.value); });
  $("json-preview").addEventListener("input", () => { state.jsonEdited = true; });
  $("job-form").addEventListener("submit", submitJob);
  $("cancel-button").addEventListener("click", cancelJob);
  $("result-download").addEventListener("click", downloadResult);
  $("clear-history").addEventListener("click", () => saveHistory([]));
  $("recent-status").addEventListener("change", loadRecent);
  $("recent-refresh").addEventListener("click", loadRecent);
  renderHistory();
  loadTasks();
  loadRecent();
}

init();
