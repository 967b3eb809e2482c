"""scripts/bench_gpu.py, the GPU throughput script, in its seconds-long CPU mode: it must run on
the lent GPU machine at the first try, so its code paths (a compute-only variant, the
loader-fed run over episodes the bridge's writer stored as JPEG rows, the table, the JSON) are
exercised here. The figures themselves mean nothing on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_tiny_cpu_run_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    script = REPO / "scripts" / "bench_gpu.py"
    argv = [sys.executable, str(script), "--device", "cpu", "--tiny", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["info"]["device"] == "cpu" and data["info"]["batch_size"] == 4
    by_name = {r["variant"]: r for r in data["results"]}
    assert set(by_name) == {"fp32", "fp32_loader_1w_jpeg"}  # bf16 / compile / graphs are GPU-only
    assert by_name["fp32"]["samples_per_s"] > 0 and by_name["fp32"]["step_ms"] > 0
    assert by_name["fp32"]["gpu_busy"] is None and by_name["fp32"]["peak_memory_gib"] is None
    loader = by_name["fp32_loader_1w_jpeg"]
    assert loader["samples_per_s"] > 0 and 0 <= loader["data_wait"] < 1
    assert "vs LeRobot A100" in proc.stdout and "fp32_loader_1w_jpeg" in proc.stdout
