// The collapsible server-log panel at the bottom of every page (polls /api/log).
const panel = document.getElementById("logpanel");
const pre = document.getElementById("log-lines");
const count = document.getElementById("log-count");
let after = 0, lines = 0;
panel.open = localStorage.getItem("logpanel-open") === "1";
panel.addEventListener("toggle", () => localStorage.setItem("logpanel-open", panel.open ? "1" : "0"));

async function poll() {
  try {
    const r = await fetch(`/api/log?after=${after}`, { credentials: "same-origin" });
    if (r.ok) {
      const body = await r.json();
      for (const { seq, line } of body.lines) {
        pre.append(line + "\n");
        after = seq; lines++;
      }
      while (pre.childNodes.length > 1000) pre.removeChild(pre.firstChild);
      count.textContent = lines ? `(${lines})` : "";
      if (body.lines.length && panel.open) pre.scrollTop = pre.scrollHeight;
    }
  } catch { /* server restarting */ }
  setTimeout(poll, 1500);
}
poll();
