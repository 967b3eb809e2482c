import { api, q } from "/static/api.js";
import { plot } from "/static/plot.js";

const root = document.getElementById("episode");
const path = root.dataset.path, episode = Number(root.dataset.episode);
const length = Number(root.dataset.length), fps = Number(root.dataset.fps);
const slider = document.getElementById("slider");
const stepEl = document.getElementById("step"), timeEl = document.getElementById("time");
const imgs = [...document.querySelectorAll("img.frame")];
const playBtn = document.getElementById("play");
let data = null, playing = false, timer = null;
const preload = new Map();

function frameUrl(camera, t) { return `/api/dataset/frame?${q({ path, episode, camera, t })}`; }

function draw(t) {
  if (!data || !data.state) return;
  const x = data.state.map((_, i) => i);
  const series = (rows, names) => rows[0].map((_, j) => ({ name: names ? names[j] : `${j}`, x, y: rows.map((r) => r[j]) }));
  plot(document.getElementById("plot-state"), { series: series(data.state, data.state_names), cursor: t });
  plot(document.getElementById("plot-action"), { series: series(data.action, data.action_names), cursor: t });
}

function show(t) {
  t = Math.max(0, Math.min(length - 1, t));
  slider.value = String(t);
  stepEl.textContent = String(t);
  timeEl.textContent = (t / fps).toFixed(2);
  for (const img of imgs) {
    const url = frameUrl(img.dataset.camera, t);
    if (img.getAttribute("src") !== url) { img.dataset.step = String(t); img.src = url; }
  }
  // warm the next frames so playback stays smooth
  for (let k = 1; k <= 4 && t + k < length; k++) for (const img of imgs) {
    const url = frameUrl(img.dataset.camera, t + k);
    if (!preload.has(url)) { const im = new Image(); im.src = url; preload.set(url, im); }
  }
  draw(t);
}

slider.addEventListener("input", () => show(Number(slider.value)));
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowRight") show(Number(slider.value) + 1);
  if (e.key === "ArrowLeft") show(Number(slider.value) - 1);
  if (e.key === " ") { e.preventDefault(); toggle(); }
});

function frameLoaded(img) { return img.complete && img.naturalWidth > 0; }

function tick() {
  if (!playing) return;
  const next = Number(slider.value) + 1;
  if (next >= length) { toggle(); return; }
  // advance only when the current frames are on screen: smooth and never skipping steps silently
  if (imgs.every(frameLoaded)) show(next);
  timer = setTimeout(tick, 1000 / fps);
}

function toggle() {
  playing = !playing;
  playBtn.textContent = playing ? "❚❚ pause" : "▶ play";
  if (playing) { if (Number(slider.value) >= length - 1) show(0); tick(); } else clearTimeout(timer);
}
playBtn.addEventListener("click", toggle);

async function load() {
  show(0);
  data = await api(`/api/dataset/episode?${q({ path, episode })}`);
  const f = data.flags;
  const parts = [`task: ${f.task || "?"}`];
  if (f.error) parts.push(`error: ${f.error}`);
  if (f.idle_start !== undefined) parts.push(`idle start ${f.idle_start}, idle end ${f.idle_end} (trimmed by --idle_threshold 1e-4)`);
  if (f.frozen_actions) parts.push("frozen actions");
  if (f.short) parts.push(`shorter than chunk ${f.chunk_size}`);
  document.getElementById("flags").textContent = parts.join(" · ");
  draw(Number(slider.value));
}
load();
