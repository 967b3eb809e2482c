// A minimal canvas line plot: plot(canvas, {series: [{name, x: [], y: [], color, dash}], cursor})
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

export function color(i) { return COLORS[i % COLORS.length]; }

export function plot(canvas, { series, cursor = null, logY = false }) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, R = 8, T = 8, B = 36;
  ctx.clearRect(0, 0, W, H);
  const tf = (v) => (logY ? Math.log10(Math.max(v, 1e-12)) : v);
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
  for (const s of series) {
    for (let i = 0; i < s.x.length; i++) {
      const y = s.y[i];
      if (y === null || y === undefined || !isFinite(y)) continue;
      xmin = Math.min(xmin, s.x[i]); xmax = Math.max(xmax, s.x[i]);
      ymin = Math.min(ymin, tf(y)); ymax = Math.max(ymax, tf(y));
    }
  }
  ctx.strokeStyle = "#ccc"; ctx.strokeRect(L, T, W - L - R, H - T - B);
  if (!isFinite(xmin)) { ctx.fillStyle = "#888"; ctx.fillText("no data yet", L + 10, T + 20); return; }
  if (xmax === xmin) xmax = xmin + 1;
  if (ymax === ymin) { ymax += 0.5; ymin -= 0.5; }
  const px = (x) => L + ((x - xmin) / (xmax - xmin)) * (W - L - R);
  const py = (y) => T + (1 - (tf(y) - ymin) / (ymax - ymin)) * (H - T - B);
  ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  const fmt = (v) => (logY ? (10 ** v).toPrecision(2) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  ctx.fillText(fmt(ymax), 2, T + 10); ctx.fillText(fmt(ymin), 2, H - B);
  ctx.fillText(String(xmin), L, H - B + 14); ctx.fillText(String(xmax), W - R - 30, H - B + 14);
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color || color(k); ctx.lineWidth = 1.5; ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let started = false;
    for (let i = 0; i < s.x.length; i++) {
      const y = s.y[i];
      if (y === null || y === undefined || !isFinite(y)) continue;
      if (!started) { ctx.moveTo(px(s.x[i]), py(y)); started = true; } else ctx.lineTo(px(s.x[i]), py(y));
      if (s.points) ctx.fillRect(px(s.x[i]) - 1.5, py(y) - 1.5, 3, 3);
    }
    ctx.stroke();
    ctx.setLineDash([]);
  });
  // legend
  let lx = L;
  series.forEach((s, k) => {
    ctx.fillStyle = s.color || color(k);
    ctx.fillRect(lx, H - 14, 10, 3);
    ctx.fillStyle = "#333"; ctx.fillText(s.name, lx + 13, H - 9);
    lx += 18 + ctx.measureText(s.name).width;
  });
  if (cursor !== null) {
    ctx.strokeStyle = "#000"; ctx.setLineDash([3, 3]); ctx.beginPath();
    ctx.moveTo(px(cursor), T); ctx.lineTo(px(cursor), H - B); ctx.stroke(); ctx.setLineDash([]);
  }
}
