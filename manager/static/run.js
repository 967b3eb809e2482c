import { api, q, formatSeconds } from "/static/api.js";
import { plot } from "/static/plot.js";

const root = document.getElementById("run");
const id = root.dataset.id;
let rows = [], logOffset = 0;

function render(summary) {
  const status = document.getElementById("run-status");
  status.textContent = summary.status; status.className = `status ${summary.status.split(" ")[0]}`;
  const p = summary.progress || 0;
  document.getElementById("progress-bar").style.width = `${Math.min(100, p * 100).toFixed(1)}%`;
  document.getElementById("progress-text").textContent =
    `step ${summary.steps_completed} / ${summary.steps_planned ?? "?"} (${(p * 100).toFixed(0)}%)`;
  root.dataset.steps = String(summary.steps_completed);
  root.dataset.status = summary.status;
  document.getElementById("eta").textContent = summary.eta_seconds ? `ETA ${formatSeconds(summary.eta_seconds)}` : "";
  document.getElementById("stop").disabled = !summary.alive;
  document.getElementById("export-button").disabled = summary.alive || summary.status !== "completed";
  document.getElementById("resume").disabled = summary.alive || summary.status === "completed";
  document.getElementById("files").textContent = (summary.artifacts || []).join(", ");
  const b = summary.best;
  document.getElementById("best").textContent = b
    ? `best (epoch ${b.epoch}, step ${b.step}): val loss ${b.val_loss?.toFixed(4)}, val L1 ${b.val_l1?.toFixed(4)}, deploy L1 ${b.val_l1_deploy?.toFixed(4)} vs mean-action ${b.val_l1_mean_action?.toFixed(4)}`
    : "no validation yet";
}

function drawCurves() {
  const train = rows.filter((r) => r.kind === "train"), val = rows.filter((r) => r.kind === "val");
  root.dataset.points = String(rows.length);
  plot(document.getElementById("plot-l1"), { series: [
    { name: "train l1", x: train.map((r) => r.step), y: train.map((r) => r.l1) },
    { name: "val l1", x: val.map((r) => r.step), y: val.map((r) => r.val_l1), points: true },
    { name: "deploy L1 (z=0)", x: val.map((r) => r.step), y: val.map((r) => r.val_l1_deploy), points: true },
    { name: "mean-action baseline", x: val.map((r) => r.step), y: val.map((r) => r.val_l1_mean_action), dash: [5, 4] },
  ] });
  plot(document.getElementById("plot-kl"), { series: [
    { name: "train kl", x: train.map((r) => r.step), y: train.map((r) => r.kl) },
    { name: "val kl", x: val.map((r) => r.step), y: val.map((r) => r.val_kl), points: true },
  ] });
}

async function poll() {
  try {
    const m = await api(`/api/run/metrics?${q({ id, after: rows.length })}`);
    if (m.total < rows.length) rows = [];  // the file was rewritten (resume trims it)
    rows = rows.concat(m.rows);
    render(m.summary);
    drawCurves();
    const l = await api(`/api/run/log?${q({ id, offset: logOffset })}`);
    if (l.text) {
      const pre = document.getElementById("run-log");
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(l.text);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    logOffset = l.offset;
  } catch (err) { document.getElementById("eta").textContent = err.message; }
  setTimeout(poll, 1000);
}

document.getElementById("stop").addEventListener("click", async () => {
  try { await api(`/api/run/stop?${q({ id })}`, { method: "POST" }); } catch (err) { alert(err.message); }
});
document.getElementById("resume").addEventListener("click", async () => {
  try { await api(`/api/run/resume?${q({ id })}`, { method: "POST" }); } catch (err) { alert(err.message); }
});
function escapeHtml(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

document.getElementById("export-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = document.getElementById("export-result");
  out.className = "result ok"; out.textContent = "exporting …";
  try {
    const body = await api("/api/run/export_innate", { json: {
      id, skill: document.getElementById("export-skill").value,
      checkpoint: document.getElementById("export-checkpoint").value,
      skip_runtime_check: document.getElementById("export-skip").checked,
    } });
    const warn = body.warnings.map((w) => `<br><span class="flag warn">${escapeHtml(w)}</span>`).join("");
    out.innerHTML = `exported into <a href="/dataset?${q({ path: body.skill })}">${escapeHtml(body.skill)}</a>: ${body.files.map(escapeHtml).join(", ")}${warn}`;
  } catch (err) { out.className = "result error"; out.textContent = err.message; }
});
poll();
