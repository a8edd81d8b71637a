// miniml console: plain JavaScript, no build step, no third-party code.
// Every call goes through the public HTTP API with the key typed once and kept in sessionStorage only
// (this tab, until it closes): never in localStorage, a cookie or a URL. Nothing from the server is ever
// inserted as HTML: text goes in with textContent, so a model card or an answer cannot run script.

const KEY_STORE = "miniml.apiKey";
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

const state = { models: [], selected: null, running: null, previous: null };

class ApiError extends Error {}

// ---------------------------------------------------------------- API calls

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`cannot reach the server: ${err.message}`);
  }
  if (!response.ok) throw await apiError(response);
  return response;
}

// The API's own error, as it says it: "401 invalid_api_key: the API key is not valid".
async function apiError(response) {
  try {
    const body = await response.json();
    const error = body.error || {};
    return new ApiError(`${response.status} ${error.code || "error"}: ${error.message || JSON.stringify(body)}`);
  } catch {
    return new ApiError(`${response.status} ${response.statusText}`);
  }
}

function showError(err) {
  const box = $("error");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

// ---------------------------------------------------------------- the key

function initKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    $("api-key").value = "";
    if (key) sessionStorage.setItem(KEY_STORE, key);
    showKeyState();
    clearError();
    loadModels();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    showKeyState();
    loadModels();
  });
  showKeyState();
}

function showKeyState() {
  const has = sessionStorage.getItem(KEY_STORE) !== null;
  $("key-state").textContent = has ? "key in use (kept in this tab only)" : "no key";
}

// ---------------------------------------------------------------- models

async function loadModels() {
  try {
    const response = await api("/v1/models");
    state.models = (await response.json()).models;
    clearError();
  } catch (err) {
    state.models = [];
    showError(err);
  }
  renderModels();
  const again = state.models.find((m) => state.selected && m.name === state.selected.name);
  if (again) openModel(again.name);
  else closeModel();
}

function renderModels() {
  const body = $("models").querySelector("tbody");
  body.replaceChildren();
  for (const m of state.models) {
    const row = el("tr", undefined, { "data-model": m.name });
    row.append(
      el("td", m.name),
      el("td", m.version ?? "folder"),
      el("td", m.alias ?? ""),
      el("td", m.task),
      el("td", m.runtime),
      el("td", (m.labels || []).join(", ")),
    );
    const open = el("button", "Open", { type: "button", "data-open": m.name });
    open.addEventListener("click", () => openModel(m.name));
    const cell = el("td");
    cell.append(open);
    row.append(cell);
    body.append(row);
  }
  $("models-empty").hidden = state.models.length > 0;
}

const PLAYGROUNDS = {
  classification: "play-classify",
  seq2seq: "play-generate",
  causal_lm: "play-generate",
  embedding: "play-embed",
};

function openModel(name) {
  const model = state.models.find((m) => m.name === name);
  if (!model) return;
  const changed = !state.selected || state.selected.name !== name;
  state.selected = model;
  for (const row of $("models").querySelectorAll("tbody tr")) {
    row.classList.toggle("selected", row.dataset.model === name);
  }
  $("workspace").hidden = false;
  $("ws-name").textContent = model.name;
  const version = model.version === null ? "folder" : `v${model.version}`;
  $("ws-meta").textContent = `${version}${model.alias ? ` @${model.alias}` : ""} · ${model.task} · ${model.runtime}`;
  if (changed) {
    for (const id of ["classify-result", "generate-output", "generate-status", "embed-result"]) {
      $(id).replaceChildren();
    }
    $("card").replaceChildren();
    $("card").dataset.model = "";
  }
  showTab($("tab-card").getAttribute("aria-selected") === "true" ? "card" : "play");
}

function closeModel() {
  state.selected = null;
  $("workspace").hidden = true;
}

function showTab(tab) {
  const model = state.selected;
  $("tab-play").setAttribute("aria-selected", String(tab === "play"));
  $("tab-card").setAttribute("aria-selected", String(tab === "card"));
  const playground = PLAYGROUNDS[model.task];
  for (const id of ["play-classify", "play-generate", "play-embed"]) $(id).hidden = tab !== "play" || id !== playground;
  $("play-none").hidden = tab !== "play" || playground !== undefined;
  $("card").hidden = tab !== "card";
  if (tab === "card" && $("card").dataset.model !== model.name) loadCard(model.name);
}

// ---------------------------------------------------------------- classification

async function classify() {
  const model = state.selected;
  const text = $("classify-text").value;
  const result = $("classify-result");
  result.replaceChildren(el("p", "…", { class: "muted" }));
  try {
    const body = { inputs: [text], top_k: Math.max(1, (model.labels || []).length) };
    const response = await api(`/v1/models/${encodeURIComponent(model.name)}/predict`, { method: "POST", body });
    const answer = await response.json();
    const prediction = answer.predictions[0];
    result.replaceChildren(el("p", `${prediction.label} (version ${answer.version ?? "folder"})`, { class: "muted" }));
    for (const { label, score } of prediction.top_k) result.append(bar(label, score));
    clearError();
  } catch (err) {
    result.replaceChildren();
    showError(err);
  }
}

function bar(label, score) {
  const row = el("div", undefined, { class: "bar", "data-label": label });
  const meter = el("progress", undefined, { max: "1", value: String(score) });
  row.append(el("span", label, { class: "label" }), meter, el("span", `${(score * 100).toFixed(1)}%`, { class: "value" }));
  return row;
}

// ---------------------------------------------------------------- generation

function guidedSpec() {
  const kind = $("guided-kind").value;
  if (!kind) return undefined;
  const text = $("guided-value").value;
  if (kind === "json_schema") {
    try {
      return { json_schema: JSON.parse(text) };
    } catch (err) {
      throw new ApiError(`structured output: the JSON schema is not valid JSON (${err.message})`);
    }
  }
  if (kind === "choice") return { choice: text.split("\n").map((s) => s.trim()).filter(Boolean) };
  return { [kind]: text };
}

async function generate() {
  const model = state.selected;
  const output = $("generate-output");
  const status = $("generate-status");
  output.textContent = "";
  status.textContent = "generating…";
  status.dataset.state = "running";
  const controller = new AbortController();
  state.running = controller;
  $("generate-run").disabled = true;
  $("generate-stop").disabled = false;
  try {
    const body = {
      inputs: [$("generate-text").value],
      max_new_tokens: Number($("generate-max").value) || undefined,
      temperature: Number($("generate-temp").value),
      stream: $("generate-stream").checked,
    };
    const guided = guidedSpec();
    if (guided !== undefined) body.guided = guided;
    const path = `/v1/models/${encodeURIComponent(model.name)}/generate`;
    const response = await api(path, { method: "POST", body, signal: controller.signal });
    const done = body.stream ? await readStream(response, output) : (await response.json()).generations[0];
    if (!body.stream) output.textContent = done.text;
    status.textContent = `done: ${done.finish_reason}, ${done.prompt_tokens} prompt + ${done.completion_tokens} new tokens`;
    status.dataset.state = "done";
    clearError();
  } catch (err) {
    status.dataset.state = "error";
    status.textContent = err.name === "AbortError" ? "stopped" : "failed";
    if (err.name !== "AbortError") showError(err);
  } finally {
    state.running = null;
    $("generate-run").disabled = false;
    $("generate-stop").disabled = true;
  }
}

// Server-sent events from fetch: `data: {"index", "text"}` per piece, `data: {"done": true, ...}` per input,
// `event: error` with the API's error, then `data: [DONE]`.
async function readStream(response, output) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let finished = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.data === "[DONE]") return finished;
      const data = JSON.parse(event.data);
      if (event.name === "error" || data.error) {
        const e = data.error || {};
        throw new ApiError(`${e.status || "stream"} ${e.code || "error"}: ${e.message || "generation failed"}`);
      }
      if (data.done) finished = data;
      else output.textContent += data.text;
    }
  }
  if (finished === null) throw new ApiError("the stream ended before the answer was complete");
  return finished;
}

function parseEvent(raw) {
  let name = "message";
  const data = [];
  for (const line of raw.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { name, data: data.join("\n") };
}

// ---------------------------------------------------------------- embeddings

async function embed() {
  const model = state.selected;
  const result = $("embed-result");
  result.replaceChildren(el("p", "…", { class: "muted" }));
  try {
    const body = { model: model.name, input: [$("embed-a").value, $("embed-b").value] };
    const answer = await (await api("/v1/embeddings", { method: "POST", body })).json();
    const [a, b] = answer.data.sort((x, y) => x.index - y.index).map((d) => d.embedding);
    const similarity = cosine(a, b);
    result.replaceChildren(bar("cosine similarity", Math.max(0, similarity)));
    result.querySelector(".value").textContent = similarity.toFixed(3);
    clearError();
  } catch (err) {
    result.replaceChildren();
    showError(err);
  }
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

// ---------------------------------------------------------------- the model card

async function loadCard(name) {
  const root = $("card");
  root.replaceChildren(el("p", "…", { class: "muted" }));
  try {
    const answer = await (await api(`/v1/models/${encodeURIComponent(name)}/card`)).json();
    renderMarkdown(answer.card, root);
    root.dataset.model = name;
    clearError();
  } catch (err) {
    root.replaceChildren();
    showError(err);
  }
}

// The small Markdown subset model cards use: front matter, headings, paragraphs, lists, tables, code.
function renderMarkdown(text, root) {
  root.replaceChildren();
  let body = text;
  const front = text.match(/^---\n([\s\S]*?)\n---\n/);
  if (front) {
    const details = el("details");
    details.append(el("summary", "Metadata (YAML front matter)"), el("pre", front[1]));
    root.append(details);
    body = text.slice(front[0].length);
  }
  const lines = body.split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
    } else if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      i++;
      root.append(el("pre", code.join("\n")));
    } else if (/^#{1,6} /.test(line)) {
      const level = Math.min(6, line.indexOf(" ") + 2);  // the card's # is a heading inside the page
      root.append(inline(el(`h${level}`), line.replace(/^#+ /, "")));
      i++;
    } else if (line.startsWith("|")) {
      const rows = [];
      for (; i < lines.length && lines[i].startsWith("|"); i++) rows.push(lines[i]);
      root.append(table(rows));
    } else if (/^[-*] /.test(line)) {
      const list = el("ul");
      for (; i < lines.length && /^[-*] /.test(lines[i]); i++) list.append(inline(el("li"), lines[i].slice(2)));
      root.append(list);
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && !/^(#|\||```|[-*] )/.test(lines[i]); i++) para.push(lines[i]);
      root.append(inline(el("p"), para.join(" ")));
    }
  }
}

function table(rows) {
  const cells = (row) => row.replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
  const node = el("table");
  const head = el("thead");
  const headRow = el("tr");
  for (const c of cells(rows[0])) headRow.append(inline(el("th"), c));
  head.append(headRow);
  const body = el("tbody");
  for (const row of rows.slice(/^\|[\s:|-]+\|?$/.test(rows[1] || "") ? 2 : 1)) {
    const tr = el("tr");
    for (const c of cells(row)) tr.append(inline(el("td"), c));
    body.append(tr);
  }
  node.append(head, body);
  return node;
}

function inline(node, text) {
  const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    node.append(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) node.append(el("code", m[1].slice(1, -1)));
    else if (m[2]) node.append(el("strong", m[2].slice(2, -2)));
    else if (/^https?:\/\//.test(m[4])) node.append(el("a", m[3], { href: m[4], rel: "noopener noreferrer", target: "_blank" }));
    else node.append(document.createTextNode(m[3]));
    last = m.index + m[0].length;
  }
  node.append(document.createTextNode(text.slice(last)));
  return node;
}

// ---------------------------------------------------------------- traffic, from /metrics

async function sampleMetrics() {
  try {
    const response = await api("/metrics");
    const sample = { at: performance.now(), totals: totals(parsePrometheus(await response.text())) };
    if (state.previous) renderStats(state.previous, sample);
    state.previous = sample;
    $("stats-note").textContent = "Computed from two samples of /metrics.";
  } catch (err) {
    $("stats-note").textContent = `metrics: ${err.message}`;
  }
}

// Prometheus text format → [{name, labels, value}] (comments and blank lines skipped).
function parsePrometheus(text) {
  const samples = [];
  const line = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const m = raw.match(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(label)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

// Per model (and "*" for all): cumulative requests, errors, latency sum/count/buckets, cache hits/misses.
function totals(samples) {
  const out = {};
  const get = (model) => (out[model] ??= { requests: 0, errors: 0, sum: 0, count: 0, buckets: {}, hits: 0, misses: 0 });
  for (const { name, labels, value } of samples) {
    const model = labels.model;
    if (!model) continue;  // /metrics, /healthz, the console's own files: not model traffic
    for (const t of [get(model), get("*")]) {
      if (name === "miniml_requests_total") {
        t.requests += value;
        if (Number(labels.status) >= 400) t.errors += value;
      } else if (name === "miniml_request_duration_seconds_sum") t.sum += value;
      else if (name === "miniml_request_duration_seconds_count") t.count += value;
      else if (name === "miniml_request_duration_seconds_bucket") t.buckets[labels.le] = (t.buckets[labels.le] || 0) + value;
      else if (name === "miniml_cache_hits_total") t.hits += value;
      else if (name === "miniml_cache_misses_total") t.misses += value;
    }
  }
  return out;
}

function renderStats(before, after) {
  const seconds = (after.at - before.at) / 1000;
  const body = $("stats").querySelector("tbody");
  body.replaceChildren();
  const names = Object.keys(after.totals).sort((a, b) => (a === "*") - (b === "*") || a.localeCompare(b));
  for (const name of names) {
    const a = after.totals[name];
    const b = before.totals[name] || { requests: 0, errors: 0, sum: 0, count: 0, buckets: {}, hits: 0, misses: 0 };
    const count = a.count - b.count;
    const lookups = a.hits - b.hits + (a.misses - b.misses);
    const row = el("tr", undefined, { "data-model": name });
    row.append(
      el("td", name === "*" ? "all models" : name),
      el("td", ((a.requests - b.requests) / seconds).toFixed(2), { class: "num" }),
      el("td", count > 0 ? ms((a.sum - b.sum) / count) : "–", { class: "num" }),
      el("td", count > 0 ? quantile(a.buckets, b.buckets, 0.95) : "–", { class: "num" }),
      el("td", lookups > 0 ? `${((100 * (a.hits - b.hits)) / lookups).toFixed(0)}%` : "–", { class: "num" }),
      el("td", ((a.errors - b.errors) / seconds).toFixed(2), { class: "num" }),
    );
    body.append(row);
  }
  $("stats-window").textContent = `(last ${seconds.toFixed(1)} s)`;
}

// A quantile of the requests between two samples, interpolated inside its histogram bucket.
function quantile(after, before, q) {
  const bounds = Object.keys(after).filter((le) => le !== "+Inf").map(Number).sort((x, y) => x - y);
  const delta = (le) => (after[le] || 0) - (before[le] || 0);
  const total = delta("+Inf");
  if (total <= 0) return "–";
  let lower = 0;
  let below = 0;
  for (const upper of bounds) {
    const key = Object.keys(after).find((le) => Number(le) === upper);
    const upTo = delta(key);
    if (upTo >= q * total) return ms(lower + ((upper - lower) * (q * total - below)) / Math.max(upTo - below, 1e-9));
    lower = upper;
    below = upTo;
  }
  return `> ${ms(lower)}`;
}

function ms(seconds) {
  return seconds < 0.01 ? `${(seconds * 1000).toFixed(2)} ms` : `${(seconds * 1000).toFixed(1)} ms`;
}

// ---------------------------------------------------------------- wiring

function init() {
  initKey();
  $("tab-play").addEventListener("click", () => showTab("play"));
  $("tab-card").addEventListener("click", () => showTab("card"));
  $("classify-run").addEventListener("click", classify);
  $("generate-run").addEventListener("click", generate);
  $("generate-stop").addEventListener("click", () => state.running && state.running.abort());
  $("embed-run").addEventListener("click", embed);
  $("guided-kind").addEventListener("change", () => {
    $("guided-value").hidden = !$("guided-kind").value;
  });
  loadModels();
  sampleMetrics();
  setInterval(sampleMetrics, REFRESH_MS);
  document.body.dataset.ready = "true";
}

init();
