"""loss_curves.png: the deploy L1 (z = 0) is plotted against the mean-action baseline, so a run that
does not beat the baseline is visible in the figure, not only in the log."""

from __future__ import annotations

import numpy as np

from act.plot import (
    BASELINE_COLOR,
    DEPLOY_COLOR,
    DEPLOY_PANEL,
    WARN_COLOR,
    beats_baseline,
    curves_from_metrics,
    decode_png,
    render_loss_curves,
    write_loss_curves,
)


def metric_rows(deploy: list[float], baseline: list[float]) -> list[dict]:
    """metrics.jsonl as act/train.py writes it: train rows every step, a val row every 2 steps."""
    rows = [{"kind": "train", "step": s, "l1": 1.0 / s, "kl": 2.0 / s, "loss": 3.0 / s} for s in range(1, 7)]
    for i, (d, b) in enumerate(zip(deploy, baseline, strict=True)):
        step = 2 * (i + 1)
        rows.append({"kind": "val", "step": step, "val_l1": 0.5 / step, "val_kl": 1.0 / step,
                     "val_loss": 1.5 / step, "val_l1_deploy": d, "val_l1_mean_action": b, "val_samples": 16})
    return rows


def test_curves_hold_deploy_l1_and_mean_action_baseline():
    panels = curves_from_metrics(metric_rows([1.2, 1.1, 1.10], [0.78, 0.78, 0.78]))
    assert list(panels) == ["l1", "kl", "loss", DEPLOY_PANEL]
    assert panels[DEPLOY_PANEL]["deploy"] == ([2, 4, 6], [1.2, 1.1, 1.10])
    assert panels[DEPLOY_PANEL]["mean action"] == ([2, 4, 6], [0.78, 0.78, 0.78])
    assert panels["l1"]["train"][1] == [1.0 / s for s in range(1, 7)]
    assert panels["loss"]["val"] == ([2, 4, 6], [1.5 / 2, 1.5 / 4, 1.5 / 6])
    assert not beats_baseline(panels[DEPLOY_PANEL])
    assert beats_baseline(curves_from_metrics(metric_rows([0.9, 0.5], [0.78, 0.78]))[DEPLOY_PANEL])


def test_rows_without_deploy_metrics_give_an_empty_deploy_panel():
    rows = [r for r in metric_rows([1.0], [1.0]) if r["kind"] == "train"]
    rows.append({"kind": "val", "step": 6, "val_l1": 0.1, "val_kl": 0.2, "val_loss": 0.3})  # an older run
    panels = curves_from_metrics(rows)
    assert panels[DEPLOY_PANEL] == {"deploy": ([], []), "mean action": ([], [])}
    assert beats_baseline(panels[DEPLOY_PANEL])  # nothing to judge, no warning
    assert render_loss_curves(panels).shape == (300, 1600, 3)


def deploy_region(img: np.ndarray) -> np.ndarray:
    return img[:, 3 * 400 : 4 * 400]


def count(region: np.ndarray, color) -> int:
    return int(np.all(region == color, axis=-1).sum())


def test_png_from_metric_rows_draws_both_deploy_curves_and_flags_a_useless_run(tmp_path):
    path = tmp_path / "loss_curves.png"
    write_loss_curves(path, metric_rows([1.2, 1.1, 1.10], [0.78, 0.79, 0.78]))  # worse than the baseline
    img = decode_png(path.read_bytes())
    assert img.shape == (300, 1600, 3)
    region = deploy_region(img)
    assert count(region, DEPLOY_COLOR) > 50 and count(region, BASELINE_COLOR) > 50
    # The warning text is drawn in the baseline's red: far more red pixels than the curve alone.
    good = decode_png(encode_good(tmp_path))
    assert WARN_COLOR == BASELINE_COLOR
    assert count(region, BASELINE_COLOR) > count(deploy_region(good), BASELINE_COLOR) + 100


def encode_good(tmp_path) -> bytes:
    path = tmp_path / "good.png"
    write_loss_curves(path, metric_rows([0.9, 0.5, 0.3], [0.78, 0.79, 0.78]))
    return path.read_bytes()
