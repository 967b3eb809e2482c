import { api, q } from "/static/api.js";

const table = document.getElementById("episodes");
const path = table ? table.dataset.path : null;
const result = document.getElementById("curation-result");

function flagText(f) {
  const failed = f.failed ? [`<span class="flag warn" title="marked failed in data/dataset_metadata.json: training skips it">marked failed</span>`] : [];
  if (f.error) return [...failed, `<span class="flag bad" title="${escapeHtml(f.error)}">${f.nan ? "NaN/Inf" : "unreadable"}</span>`];
  const out = [...failed];
  if (f.idle_start) out.push(`<span class="flag">idle start ${f.idle_start}</span>`);
  if (f.idle_end) out.push(`<span class="flag">idle end ${f.idle_end}</span>`);
  if (f.frozen_actions) out.push(`<span class="flag bad">frozen actions</span>`);
  if (f.short) out.push(`<span class="flag warn">shorter than chunk ${f.chunk_size}</span>`);
  for (const [cam, n] of Object.entries(f.dropped_frames || {})) if (n) out.push(`<span class="flag warn">${cam}: ${n} dropped</span>`);
  for (const [cam, n] of Object.entries(f.duplicated_frames || {})) if (n) out.push(`<span class="flag warn">${cam}: ${n} duplicated</span>`);
  if (!out.length) out.push(`<span class="flag ok">ok</span>`);
  return out;
}

function escapeHtml(s) { return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

async function loadFlags() {
  const rows = table.querySelectorAll("tbody tr");
  const chunk = document.getElementById("chunk").value || 100;
  for (let start = 0; start < rows.length; start += 50) {
    const body = await api(`/api/dataset/flags?${q({ path, start, count: 50, chunk_size: chunk })}`);
    for (const f of body.flags) {
      const tr = table.querySelector(`tr[data-episode="${f.index}"]`);
      tr.querySelector(".flags").innerHTML = flagText(f).join(" ");
      tr.querySelector(".flags").classList.remove("muted");
      if (f.task) tr.querySelector(".task").textContent = f.task;
    }
  }
  table.dataset.flagsLoaded = "1";
}

function selected() { return [...table.querySelectorAll("input.sel:checked")].map((c) => Number(c.value)); }

function show(ok, html) { result.className = "result " + (ok ? "ok" : "error"); result.innerHTML = html; }

async function submit(event, url, payload) {
  event.preventDefault();
  show(true, "writing the new dataset (decoding every kept episode through the bridge) …");
  try {
    const body = await api(url, { json: payload });
    const what = body.episodes !== undefined ? `${body.episodes} episodes` : `changed: ${Object.keys(body.changed || {}).join(", ")}`;
    const notes = (body.notes || []).map((n) => `<br><span class="muted">${escapeHtml(n)}</span>`).join("");
    show(true, `wrote <a id="new-dataset-link" href="/dataset?${q({ path: body.path })}">${escapeHtml(body.path)}</a> (${escapeHtml(what)})${notes}`);
  } catch (err) { show(false, escapeHtml(err.message)); }
}

if (table) {
  loadFlags().catch((err) => show(false, escapeHtml(err.message)));
  document.getElementById("chunk").addEventListener("change", () => loadFlags());
  document.getElementById("select-all").addEventListener("change", (e) => {
    table.querySelectorAll("input.sel").forEach((c) => { c.checked = e.target.checked; });
  });
  document.getElementById("delete-form").addEventListener("submit", (e) => {
    const episodes = selected();
    if (!episodes.length) { e.preventDefault(); show(false, "select the episodes to delete first"); return; }
    submit(e, "/api/dataset/delete_episodes", { path, episodes, target: document.getElementById("delete-target").value });
  });
  const taskForm = document.getElementById("task-form");
  if (taskForm) taskForm.addEventListener("submit", (e) => submit(e, "/api/dataset/edit_tasks", {
    path, episodes: selected(), task: document.getElementById("task-text").value, target: document.getElementById("task-target").value,
  }));
  const metaForm = document.getElementById("metadata-form");
  if (metaForm) metaForm.addEventListener("submit", (e) => {
    // only the fields that changed are sent; the server refuses a request that changes nothing
    const payload = { path, target: document.getElementById("meta-target").value };
    for (const [id, key] of [["meta-name", "name"], ["meta-guidelines", "guidelines"]]) {
      const el = document.getElementById(id);
      if (el.value !== el.defaultValue) payload[key] = el.value;
    }
    const execution = {};
    for (const el of metaForm.querySelectorAll("input.exec")) {
      if (el.value === el.defaultValue) continue;
      const v = el.value.trim(), type = el.dataset.type;
      if (type === "list") execution[el.dataset.key] = v ? v.split(/[\s,]+/).filter(Boolean).map(Number) : [];
      else if (!v) execution[el.dataset.key] = null;
      else execution[el.dataset.key] = type === "str" ? v : Number(v);
    }
    if (Object.keys(execution).length) payload.execution = execution;
    submit(e, "/api/skill/metadata", payload);
  });
  document.getElementById("merge-form").addEventListener("submit", (e) => {
    const others = document.getElementById("merge-others").value.split(",").map((s) => s.trim()).filter(Boolean);
    const sel = selected();
    submit(e, "/api/merge", {
      sources: [{ path, episodes: sel.length ? sel : null }, ...others.map((p) => ({ path: p }))],
      target: document.getElementById("merge-target").value,
    });
  });
}
