// The dashboard: runs, evaluations and the loop, read from /v1/gemfuse/*; it only reads, never starts or deletes.
// Uses $ and headers() from the page's script.
"use strict";

const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const fmt = (value, digits = 4) => value === null || value === undefined || Number.isNaN(value) ? "-" : (+value).toPrecision(digits);
const pct = (value) => value === null || value === undefined || Number.isNaN(value) ? "-" : (100 * value).toFixed(1) + "%";
const POLL_MS = 2000;
let poller = null;  // the timer of the view on screen; replaced when the view changes
let generation = 0;  // bumped on each view change, so a late answer for an old view draws nothing

async function api(path) {
  const response = await fetch("/v1/gemfuse/" + path, {headers: headers()});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || "HTTP " + response.status);
  return body;
}

// -- charts (inline SVG) -------------------------------------------------------------------------------------
const COLORS = ["#2563eb", "#ea580c", "#15803d", "#9333ea", "#b91c1c"];

// A linear (or log) map from the values' range onto [from, to], with five ticks labelled to the range's precision.
function scale(values, from, to) {
  const finite = values.filter((v) => Number.isFinite(v));
  let low = finite.length ? Math.min(...finite) : 0, high = finite.length ? Math.max(...finite) : 1;
  if (high === low) { high += Math.abs(high) * 0.1 || 0.5; low -= Math.abs(low) * 0.1 || 0.5; }
  const f = (v) => from + (to - from) * ((v - low) / (high - low));
  f.ticks = [0, 0.25, 0.5, 0.75, 1].map((t) => low + t * (high - low));
  const digits = Math.max(0, -Math.floor(Math.log10((high - low) / 4)));
  const tiny = Math.max(Math.abs(low), Math.abs(high)) < 1e-3;
  f.label = (v) => tiny ? v.toExponential(2) : v.toFixed(Math.min(digits, 6));
  return f;
}

// series: [{name, points: [[x, y], ...], dots, line, errors: [[low, high], ...], labels: [...]}]
function chart(series, {title = "", xLabel = "", yLabel = "", width = 640, height = 260, yRange = null, id = ""} = {}) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return `<p class="empty">${esc(title)}: nothing logged yet</p>`;
  const left = 56, bottom = 34, top = 22, right = 24;
  const X = scale(all.map((p) => p[0]), left, width - right);
  const Y = scale(yRange || all.map((p) => p[1]).concat(series.flatMap((s) => (s.errors || []).flat())), height - bottom, top);
  let out = `<svg class="chart" id="${esc(id)}" width="${width}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">`;
  out += `<text x="${left}" y="12">${esc(title)}</text>`;
  for (const t of Y.ticks) out += `<line x1="${left}" x2="${width - right}" y1="${Y(t)}" y2="${Y(t)}" stroke="#eee"/><text x="${left - 4}" y="${Y(t) + 4}" text-anchor="end">${Y.label(t)}</text>`;
  for (const t of X.ticks) out += `<text x="${X(t)}" y="${height - bottom + 16}" text-anchor="middle">${X.label(t)}</text>`;
  out += `<text x="${(width + left) / 2}" y="${height - 4}" text-anchor="middle">${esc(xLabel)}</text>`;
  out += `<text x="12" y="${height / 2}" transform="rotate(-90 12 ${height / 2})" text-anchor="middle">${esc(yLabel)}</text>`;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (s.line !== false && pts.length > 1)
      out += `<polyline class="series" data-series="${esc(s.name)}" data-points="${pts.length}" fill="none" stroke="${color}" stroke-width="1.5" points="${pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ")}"/>`;
    pts.forEach((p, j) => {
      if (s.errors) out += `<line x1="${X(p[0])}" x2="${X(p[0])}" y1="${Y(s.errors[j][0])}" y2="${Y(s.errors[j][1])}" stroke="${color}"/>`;
      if (s.dots || pts.length === 1) out += `<circle class="dot" data-series="${esc(s.name)}" cx="${X(p[0])}" cy="${Y(p[1])}" r="3.5" fill="${color}"><title>${esc(s.name)}: ${fmt(p[1])}</title></circle>`;
      if (s.labels) out += `<text x="${X(p[0]) + 6}" y="${Y(p[1]) - 6}">${esc(s.labels[j])}</text>`;
    });
    out += `<text x="${width - 12}" y="${16 + 14 * i}" text-anchor="end" style="fill:${color}">${esc(s.name)}</text>`;
  });
  return out + "</svg>";
}

// -- runs ----------------------------------------------------------------------------------------------------
const badge = (state) => `<span class="badge ${esc(state)}">${esc(state)}</span>`;
const memoryText = (m) => m.peak_gib === null ? "-" :
  `${fmt(m.peak_gib, 3)} GiB` + (m.estimate_gib ? ` (estimate ${fmt(m.estimate_gib, 3)})` : "");

async function showRuns() {
  const view = $("view-runs"), gen = generation;
  const draw = async () => {
    const {data} = await api("runs");
    if (gen !== generation) return;
    if (!data.length) { view.innerHTML = `<h2>Runs</h2><p class="empty">No run folders yet under the runs folder (gemfuse serve --runs DIR).</p>`; return; }
    view.innerHTML = `<h2>Runs</h2><table class="grid" id="runs-table"><tr><th>run</th><th>status</th><th>base</th><th>rows</th><th>step</th><th>loss</th><th>val loss</th><th>tokens/s</th><th>peak memory</th><th>updated</th></tr>` +
      data.map((r) => `<tr class="link" data-run="${esc(r.id)}"><td>${esc(r.path)}</td><td>${badge(r.status)}</td><td>${esc(r.base_model)}</td>
        <td>${r.rows ? r.rows.train + (r.rows.val ? " + " + r.rows.val : "") : "-"}</td><td>${r.step}/${r.total_steps ?? "?"}</td>
        <td>${fmt(r.last_loss)}</td><td>${fmt(r.best_val_loss)}</td><td>${r.tokens_per_s ? Math.round(r.tokens_per_s) : "-"}</td>
        <td>${memoryText(r.memory)}</td><td>${esc(r.updated)}</td></tr>`).join("") + "</table>";
    for (const row of view.querySelectorAll("tr[data-run]")) row.onclick = () => { location.hash = "runs/" + row.dataset.run; };
  };
  await draw();
  poller = setInterval(() => draw().catch(() => {}), POLL_MS * 2);
}

async function showRun(id) {
  const view = $("view-runs"), gen = generation;
  let metrics = [], seen = 0;  // the lines shown (a long run's first read is thinned) and the lines read
  const draw = async () => {
    const found = await api(`runs/${id}?since=${seen}`);
    if (gen !== generation) return "gone";
    metrics = found.metrics_from === seen ? metrics.concat(found.metrics) : found.metrics;
    seen = found.metrics_count;
    const r = found.run, m = found.manifest;
    const train = metrics.filter((x) => "loss" in x).map((x) => [x.step, x.loss]);
    const val = metrics.filter((x) => "val_loss" in x).map((x) => [x.step, x.val_loss]);
    const lr = metrics.filter((x) => "lr" in x).map((x) => [x.step, x.lr]);
    const norm = metrics.filter((x) => "grad_norm" in x).map((x) => [x.step, x.grad_norm]);
    view.innerHTML = `<h2><a href="#runs">Runs</a> / ${esc(r.path)} ${badge(r.status)}</h2>
      ${r.why ? `<p class="why" id="run-why">${esc(r.why)}</p>` : ""}
      <div class="panel facts">
        <div><span>base model</span>${esc(r.base_model)} (${esc(r.family)})</div>
        <div><span>device</span>${esc(r.device)} ${esc(r.dtype)}${r.processes > 1 ? `, ${r.processes} processes${r.sharded ? " (sharded)" : ""}` : ""}</div>
        <div><span>rows</span>${r.rows ? `${r.rows.train} train, ${r.rows.val} validation` : "-"}</div>
        <div><span>step</span><b id="run-step">${r.step}</b> of ${r.total_steps ?? "?"}</div>
        <div><span>loss (last / best validation)</span>${fmt(r.last_loss)} / ${fmt(r.best_val_loss)}</div>
        <div><span>learning rate</span>${r.lr === null ? "-" : (+r.lr).toExponential(2)}</div>
        <div><span>supervised tokens/s</span>${r.tokens_per_s ? Math.round(r.tokens_per_s) : "-"}</div>
        <div><span>peak memory (against the estimate)</span>${memoryText(r.memory)}${r.memory.estimate_over_peak ? `, estimate x${r.memory.estimate_over_peak}` : ""}${r.memory.per_rank_gib ? `; each process: ${r.memory.per_rank_gib.map((g) => g === null ? "not known" : `${g.toFixed(2)} GiB`).join(" / ")}` : ""}</div>
        <div><span>skipped steps (not finite)</span>${r.skipped_steps}</div>
      </div>
      <div class="charts"><div class="panel">${chart([{name: "training loss", points: train}, {name: "validation loss", points: val, dots: true}],
        {title: "loss per supervised token", xLabel: "step", yLabel: "loss", id: "loss-chart"})}</div>
      <div class="panel">${chart([{name: "learning rate", points: lr}], {title: "learning rate", xLabel: "step", width: 320, height: 130, id: "lr-chart"})}
      ${chart([{name: "gradient norm", points: norm}], {title: "gradient norm", xLabel: "step", width: 320, height: 130, id: "norm-chart"})}</div></div>
      <div class="panel hint"><b>Next</b>: ${r.next.map((c) => `<code>${esc(c)}</code>`).join(" · ") || "-"}</div>
      <details class="panel"><summary>manifest.json</summary><pre>${esc(JSON.stringify(m, null, 2))}</pre></details>`;
    return r.status;
  };
  const state = await draw();
  if (state === "running") poller = setInterval(() => draw().then((s) => { if (s !== "running") clearInterval(poller); }).catch(() => {}), POLL_MS);
}

// -- evaluations ---------------------------------------------------------------------------------------------
async function showEvals() {
  const view = $("view-evals");
  const {data} = await api("evals");
  if (!data.length) { view.innerHTML = `<h2>Evaluations</h2><p class="empty">No eval reports yet under the evals folder (gemfuse eval ... --out evals/NAME).</p>`; return; }
  view.innerHTML = `<h2>Evaluations</h2><table class="grid" id="evals-table"><tr><th>report</th><th>dataset</th><th>test items</th><th>systems</th><th>most accurate</th></tr>` +
    data.map((e) => `<tr class="link" data-eval="${esc(e.id)}"><td>${esc(e.id)}</td><td>${esc(e.dataset)}</td><td>${e.test}</td>
      <td>${e.systems.map(esc).join(", ")}</td><td>${e.top ? `${esc(e.top.name)} ${pct(e.top.accuracy)}` : "-"}</td></tr>`).join("") + "</table>";
  for (const row of view.querySelectorAll("tr[data-eval]")) row.onclick = () => { location.hash = "evals/" + row.dataset.eval; };
}

function accuracyCostChart(report) {
  const systems = report.systems.filter((s) => s.accuracy !== null && s.accuracy !== undefined);  // failed: no point
  const priced = systems.some((s) => s.cost > 0) && !systems.some((s) => s.unpriced.length);
  const x = (s) => priced ? s.cost / Math.max(s.n, 1) : s.prompt_tokens_per_item + s.completion_tokens_per_item;
  const series = ["member", "fusion", "finetune"].map((kind) => {
    const group = systems.filter((s) => (kind === "fusion" ? s.kind === "fusion" : kind === "member" ? s.kind === "member" && !s.base : s.kind !== "fusion" && s.base));
    return {name: kind === "finetune" ? "fine-tunes" : kind + "s", points: group.map((s) => [x(s), s.accuracy]),
            errors: group.map((s) => s.interval), labels: group.map((s) => s.name), dots: true, line: false};
  }).filter((s) => s.points.length);
  if (report.frontier && priced)
    series.push({name: "cascade, by threshold", points: [...report.frontier.points].sort((a, b) => a.cost_per_item - b.cost_per_item).map((p) => [p.cost_per_item, p.accuracy])});
  return chart(series, {title: "accuracy on test (95% CI) against " + (priced ? "cost per item (USD)" : "tokens per item"),
                        xLabel: priced ? "cost per item (USD)" : "tokens per item (prompt + completion)", yLabel: "accuracy",
                        yRange: [0, 1], width: 760, height: 360, id: "accuracy-chart"});
}

async function showEval(id) {
  const view = $("view-evals");
  const found = await api("evals/" + id);
  const runs = found.runs;
  const rows = found.rows.map((cells, i) => {
    const name = found.report.systems[i].name;
    const first = runs[name] ? `<a class="run-link" href="#runs/${esc(runs[name])}">${esc(cells[0])}</a>` : esc(cells[0]);
    return `<tr><td>${first}</td>${cells.slice(1).map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`;
  });
  view.innerHTML = `<h2><a href="#evals">Evaluations</a> / ${esc(id)}</h2><p>${esc(found.heading)}</p>
    <table class="grid" id="eval-table"><tr>${found.columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>${rows.join("")}</table>
    <div class="panel"><b>What it says</b><ul id="findings">${found.findings.map((f) => `<li>${esc(f)}</li>`).join("")}</ul></div>
    <div class="panel">${accuracyCostChart(found.report)}</div>`;
}

// -- the loop ------------------------------------------------------------------------------------------------
async function showLoop() {
  const view = $("view-loop");
  const {capture, distil} = await api("loop");
  const days = [...new Set(capture.per_day.map((d) => d.day))], models = [...new Set(capture.per_day.map((d) => d.model))];
  const cell = (day, model) => (capture.per_day.find((d) => d.day === day && d.model === model) || {rows: ""}).rows;
  const captured = capture.rows ? `<table class="grid" id="capture-table"><tr><th>day</th>${models.map((m) => `<th>${esc(m)}</th>`).join("")}</tr>` +
      days.map((d) => `<tr><td>${esc(d)}</td>${models.map((m) => `<td>${cell(d, m)}</td>`).join("")}</tr>`).join("") + "</table>"
    : `<p class="empty">Nothing captured${capture.folder ? ` in ${esc(capture.folder)}` : ""} (gemfuse serve --capture DIR keeps every answer as a training row).</p>`;
  const stage = (s) => `${esc(s.stage)} ${badge(s.state)}`;
  // a student's cost or latency as a share of the teacher's; undefined (an unpriced teacher) said in words
  const share = (f) => typeof f === "number" ? pct(f) : f && f.fraction !== null && f.fraction !== undefined ? pct(f.fraction)
    : `<span title="${esc((f && f.why) || "")}">not known</span>`;
  const gain = (g) => g && g.value !== null && g.value !== undefined ? `${pct(g.value)}` + (g.interval ? ` (${pct(g.interval[0])}-${pct(g.interval[1])})` : "") : "-";
  const distilled = distil.length ? `<table class="grid" id="distil-table"><tr><th>distil run</th><th>stages</th><th>teacher</th><th>student</th><th>held-out accuracy</th><th>gain kept</th><th>cost / latency of the teacher's</th></tr>` +
      distil.map((d) => `<tr><td>${esc(d.id)}</td><td>${d.stages.map(stage).join(" → ")}</td><td>${esc(d.teacher)}</td>
        <td>${d.student_run ? `<a href="#runs/${esc(d.student_run)}">${esc(d.student ? d.student.name : "student")}</a>` : "-"}</td>
        <td>${d.accuracy ? Object.entries(d.accuracy).map(([k, v]) => `${esc(k)} ${pct(v)}`).join("<br>") : "-"}</td>
        <td class="gain">${gain(d.gain_kept)}</td><td>${share(d.cost_fraction)} / ${share(d.latency_fraction)}</td></tr>`).join("") + "</table>"
    : `<p class="empty">No distil runs yet under the distil folder (gemfuse distil run ... --out distil/NAME).</p>`;
  view.innerHTML = `<h2>Captured rows: ${capture.rows}</h2>${captured}<h2>Distil runs</h2>${distilled}`;
}

// -- views ---------------------------------------------------------------------------------------------------
async function route() {
  clearInterval(poller);
  generation += 1;
  const hash = decodeURIComponent(location.hash.slice(1));
  const [view, ...rest] = hash.split("/");
  const name = ["runs", "evals", "loop"].includes(view) ? view : "play";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + name;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("on", link.dataset.view === name);
  const id = rest.join("/");
  try {
    if (name === "runs") await (id ? showRun(id) : showRuns());
    else if (name === "evals") await (id ? showEval(id) : showEvals());
    else if (name === "loop") await showLoop();
  } catch (error) {
    $("view-" + name).innerHTML = `<p class="why" id="view-error">${esc(error.message)}</p>`;
  }
}

window.addEventListener("hashchange", route);
route();
