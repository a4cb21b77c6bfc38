// tunelab dashboard: the little the pages need beyond HTML. No framework, no network but
// this server. Every text from the server goes into the page as text (textContent), never
// as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function csrf() {
  const meta = document.querySelector('meta[name="csrf"]');
  return meta ? meta.content : "";
}

function svgNode(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

// Charts ------------------------------------------------------------------------------
// One SVG line chart: series of [step, value] pairs, axes with a few ticks.
function drawChart(svg, series) {
  const width = 600, height = 260, left = 48, right = 12, top = 12, bottom = 28;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const all = series.flatMap((s) => s.points);
  svg.setAttribute("data-points", String(all.length));
  if (!all.length) return;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const X = (x) => left + (x - x0) / (x1 - x0) * (width - left - right);
  const Y = (y) => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
  svg.appendChild(svgNode("line", {class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom}));
  svg.appendChild(svgNode("line", {class: "axis", x1: left, y1: top, x2: left, y2: height - bottom}));
  for (let i = 0; i <= 4; i++) {
    const value = y0 + (y1 - y0) * i / 4;
    const label = svgNode("text", {x: left - 6, y: Y(value) + 4, "text-anchor": "end"});
    label.textContent = value.toPrecision(3);
    svg.appendChild(label);
    svg.appendChild(svgNode("line", {class: "axis", x1: left, y1: Y(value), x2: width - right, y2: Y(value)}));
  }
  for (const step of [x0, Math.round((x0 + x1) / 2), x1]) {
    const label = svgNode("text", {x: X(step), y: height - 8, "text-anchor": "middle"});
    label.textContent = Number.isInteger(step) ? String(step) : step.toFixed(1);
    svg.appendChild(label);
  }
  for (const s of series) {
    if (!s.points.length) continue;
    const path = s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
    svg.appendChild(svgNode("polyline", {class: `series-${s.kind}`, points: path}));
    if (s.points.length < 40 || s.kind === "valid") {
      for (const p of s.points) {
        svg.appendChild(svgNode("circle", {class: `dot-${s.kind}`, cx: X(p[0]), cy: Y(p[1]), r: 2.5}));
      }
    }
  }
}

// A job page: curves, events, progress and status, live over server-sent events. ----------
function jobPage() {
  const head = document.getElementById("job");
  const id = head.dataset.job;
  const points = new Map(); // step -> values; a step sent again replaces its values
  const lossChart = document.getElementById("loss-chart");
  const accuracyChart = document.getElementById("accuracy-chart");
  const pick = (key) => [...points.values()].filter((p) => p[key] != null).map((p) => [p.step, p[key]]);
  const validLoss = () => [...points.values()]
    .filter((p) => (p.full_valid_loss ?? p.valid_loss) != null)
    .map((p) => [p.step, p.full_valid_loss ?? p.valid_loss]);
  function redraw() {
    drawChart(lossChart, [{kind: "train", points: pick("train_loss")}, {kind: "valid", points: validLoss()}]);
    // Each method has its headline accuracy (registry/metrics.py's TRAIN_ACCURACIES):
    // supervised the token accuracy, dpo the reward accuracy. The job's own one is drawn.
    const kind = pick("train_reward_accuracy").length || pick("valid_reward_accuracy").length
      ? "reward" : "mean_token";
    drawChart(accuracyChart, [{kind: "train", points: pick(`train_${kind}_accuracy`)},
                              {kind: "valid", points: pick(`valid_${kind}_accuracy`)}]);
    const words = kind === "reward" ? "reward accuracy" : "token accuracy";
    accuracyChart.setAttribute("aria-label", `${words} by step`);
    document.getElementById("accuracy-train-key").textContent = `train ${words}`;
    document.getElementById("accuracy-valid-key").textContent = `validation ${words}`;
    document.getElementById("no-points").hidden = points.size > 0;
  }
  function addEvents(events) {
    const body = document.querySelector("#events tbody");
    for (const event of events) {
      const row = document.createElement("tr");
      row.className = `level-${event.level}`;
      for (const text of [event.time, event.message]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
  }
  function showProgress(p) {
    document.getElementById("progress-step").textContent =
      `step ${p.step}${p.total_steps ? " / " + p.total_steps : ""}`;
    document.getElementById("progress-speed").textContent =
      p.tokens_per_s ? `${Math.round(p.tokens_per_s)} tok/s` : "- tok/s";
    document.getElementById("progress-eta").textContent =
      p.eta_s != null ? `ETA ${formatSeconds(p.eta_s)}` : "ETA -";
  }
  function showStatus(status) {
    const badge = document.getElementById("status");
    badge.textContent = status;
    badge.className = `status status-${status}`;
    head.dataset.status = status;
  }
  const source = new EventSource(`/jobs/${encodeURIComponent(id)}/stream?after=${head.dataset.after}`);
  source.addEventListener("metrics", (e) => {
    for (const p of JSON.parse(e.data)) points.set(p.step, {...(points.get(p.step) || {}), ...p});
    redraw();
  });
  source.addEventListener("events", (e) => addEvents(JSON.parse(e.data)));
  source.addEventListener("progress", (e) => showProgress(JSON.parse(e.data)));
  source.addEventListener("status", (e) => showStatus(JSON.parse(e.data).status));
  source.addEventListener("end", () => source.close());
  redraw();
}

function formatSeconds(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// The jobs page: statuses live, filters applied on change. ------------------------------
function jobsPage() {
  const form = document.getElementById("filters");
  for (const select of form.querySelectorAll("select")) {
    select.addEventListener("change", () => form.submit());
  }
  // The page's filters go with it: a new job is announced only if it would be listed here.
  const source = new EventSource(`/stream/jobs${window.location.search}`);
  source.addEventListener("added", (e) => {
    const body = document.querySelector("#jobs tbody");
    if (!body) { window.location.reload(); return; } // the first job: the page has no table
    for (const row of JSON.parse(e.data).reverse()) { // newest first: insert oldest first
      if (!body.querySelector(`tr[data-job="${CSS.escape(row.id)}"]`)) body.prepend(jobRow(row));
    }
  });
  source.addEventListener("statuses", (e) => {
    for (const item of JSON.parse(e.data)) {
      const row = document.querySelector(`tr[data-job="${CSS.escape(item.id)}"] .status`);
      if (row) {
        row.textContent = item.status;
        row.className = `status status-${item.status}`;
      }
    }
  });
}

// A jobs-table row built from a row of /jobs.json, as jobs.html renders it; text as text.
function jobRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.job = row.id;
  const cell = (className) => {
    const td = document.createElement("td");
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  };
  const span = (parent, className, text) => {
    const node = document.createElement(parent === null ? "div" : "span");
    node.className = className;
    node.textContent = text;
    return node;
  };
  const link = document.createElement("a");
  link.href = `/jobs/${encodeURIComponent(row.id)}`;
  link.textContent = row.id;
  cell("id").appendChild(link);
  const name = cell("name");
  name.textContent = row.name;
  name.appendChild(span(null, "muted", row.source));
  cell("").textContent = row.provider;
  cell("").appendChild(span("", `status status-${row.status}`, row.status));
  const retires = cell("");
  const r = row.retirement;
  retires.appendChild(r ? span("", `retires${r.days < 30 ? " soon" : ""}`,
                               r.days >= 0 ? `${r.days} days left` : "retired")
                        : span("", "muted", "-"));
  cell("when").textContent = row.created;
  return tr;
}

// The new-run page: upload a file, then check it. --------------------------------------
function newPage() {
  const input = document.getElementById("upload-file");
  const said = document.getElementById("upload-status");
  input.addEventListener("change", async () => {
    if (!input.files.length) return;
    const body = new FormData();
    body.append("purpose", "fine-tune");
    body.append("file", input.files[0]);
    said.textContent = "uploading…";
    const answer = await fetch("/new/upload", {method: "POST", body, headers: {"X-CSRF-Token": csrf()},
                                               credentials: "same-origin"});
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      said.textContent = (data.error && data.error.message) || `upload refused (${answer.status})`;
      return;
    }
    const provider = document.querySelector('#choose select[name="provider"]').value;
    window.location.assign(`/new?file=${encodeURIComponent(data.id)}&provider=${encodeURIComponent(provider)}`);
  });
}

// A comparison queued or running: show its progress, then the result. ------------------
function comparisonPage() {
  const box = document.getElementById("compare-run");
  if (!box || !["queued", "running"].includes(box.dataset.status)) return;
  const list = document.getElementById("compare-progress");
  const poll = async () => {
    const answer = await fetch(`/compare/${encodeURIComponent(box.dataset.run)}/status.json`,
                               {credentials: "same-origin"});
    const run = await answer.json();
    if (run.status !== box.dataset.status) { window.location.reload(); return; }
    while (list.firstChild) list.removeChild(list.firstChild);
    for (const [what, pair] of Object.entries(run.progress || {})) {
      const item = document.createElement("li");
      item.textContent = `${what}: ${pair[0]} / ${pair[1]}`;
      list.appendChild(item);
    }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

const PAGES = {job: jobPage, jobs: jobsPage, new: newPage, comparison: comparisonPage};
document.addEventListener("DOMContentLoaded", () => {
  const page = PAGES[document.body.dataset.page];
  if (page) page();
});
