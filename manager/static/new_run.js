import { api } from "/static/api.js";

const form = document.getElementById("run-form");
const result = document.getElementById("run-result");
const PRESETS = {
  tiny: { num_epochs: 3, batch_size: 4, chunk_size: 10, hidden_dim: 64, dim_feedforward: 128, enc_layers: 1, dec_layers: 1,
    nheads: 2, backbone_weights: "none", gpus: "cpu", val_interval: 1, val_samples: 8 },
  // Innate's Training Manager defaults, in this CLI's names (--max_steps N = --num_epochs 0 --steps N)
  innate: { num_epochs: 0, steps: 120000, batch_size: 96, learning_rate: 5e-5, chunk_size: 30, hidden_dim: 512,
    dim_feedforward: 3200, kl_weight: 10, enc_layers: 4, dec_layers: 7, nheads: 8 },
};

document.getElementById("preset").addEventListener("change", (e) => {
  const preset = PRESETS[e.target.value] || {};
  for (const input of form.querySelectorAll("input[data-kind], select")) {
    if (!input.name || input.name === "dataset") continue;
    if (input.name in preset) input.value = String(preset[input.name]);
    else if (input.dataset.default !== undefined) input.value = input.dataset.default;
  }
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const flags = {};
  for (const el of form.querySelectorAll("fieldset input, fieldset select")) {
    if (el.type === "checkbox") { if (el.checked) flags[el.name] = true; continue; }
    if (el.value !== "" && el.value !== el.dataset.default) flags[el.name] = el.value;
  }
  result.className = "result"; result.textContent = "starting …";
  try {
    const body = await api("/api/runs", { json: { dataset: form.dataset.value, name: document.getElementById("run-name").value, flags } });
    location.href = `/run?id=${encodeURIComponent(body.id)}`;
  } catch (err) { result.className = "result error"; result.textContent = err.message; }
});
