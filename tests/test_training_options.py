"""Training options users reach for in the peers (issue 17): a warm-up + cosine schedule that a
resumed run continues exactly, fine-tuning from a trained run, TensorBoard event files holding
the metrics.jsonl scalars, and the data-wait share of each logged interval."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from test_run_faults import manifest, tiny_run
from test_train_e2e import only_run_dir
from test_train_resume import start_cli, wait_for_step

import train_lerobot_to_act as cli
from act.checkpoint import load_checkpoint
from act.schedule import lr_factor

LR = 5e-5


def rows(out, kind: str = "train") -> list[dict]:
    lines = (only_run_dir(out) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_lr_factor_is_the_documented_formula():
    assert [lr_factor(s, 10, 0, "constant") for s in range(10)] == [1.0] * 10
    assert [lr_factor(s, 10, 4, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = [lr_factor(s, 10, 2, "cosine") for s in range(10)]
    assert cosine[:3] == [0.5, 1.0, 1.0]  # warm-up, then the cosine starts at the full rate
    assert cosine[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a > b for a, b in zip(cosine[2:], cosine[3:], strict=False))  # decays every step
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor(0, 10, 0, "linear")


def test_cosine_with_warmup_follows_the_formula_and_continues_after_sigterm(tmp_path, fixtures_dir):
    steps, warmup = 10, 3
    out = tmp_path / "out"
    args = [*tiny_run(fixtures_dir / "so100_v30_video", out), "--num_epochs", "0", "--steps", str(steps),
            "--lr_schedule", "cosine", "--warmup_steps", str(warmup), "--log_interval", "1"]
    proc = start_cli(args)
    try:
        wait_for_step(out, 3, proc)
    except BaseException:
        proc.kill()
        raise
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143
    assert cli.main(args) == 0  # the identical command resumes
    assert manifest(out)["resumed"] is True
    got = [(r["step"], r["lr"]) for r in rows(out)]
    assert [s for s, _ in got] == list(range(1, steps + 1))
    for step, lr in got:  # row `step` logs the rate its (0-based step - 1) update used
        assert lr == pytest.approx(LR * lr_factor(step - 1, steps, warmup, "cosine"), rel=1e-12), step
    m = manifest(out)
    assert m["schedule"] == {"lr_schedule": "cosine", "warmup_steps": warmup, "learning_rate": LR,
                             "lr_backbone": LR}
    assert all(0 <= r["data_wait_fraction"] <= 1 for r in rows(out))


def test_tensorboard_events_hold_the_metrics_jsonl_scalars(tmp_path, fixtures_dir):
    pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    args = [*tiny_run(fixtures_dir / "so100_v30_video", out), "--tensorboard", "--log_interval", "1"]
    assert cli.main(args) == 0
    events = EventAccumulator(str(only_run_dir(out) / "tensorboard"))
    events.Reload()
    for kind in ("train", "val"):
        for row in rows(out, kind):
            for key in ("loss", "l1", "kl", "lr") if kind == "train" else ("val_loss", "val_l1_deploy"):
                logged = {e.step: e.value for e in events.Scalars(f"{kind}/{key}")}
                assert logged[row["step"]] == pytest.approx(row[key], rel=1e-6), (kind, key, row["step"])
    assert len(events.Scalars("train/loss")) == len(rows(out)) == 3


def test_fine_tuning_starts_from_the_given_run_and_a_mismatch_is_refused_before_training(
        tmp_path, fixtures_dir, capsys):
    first = tmp_path / "a"
    assert cli.main(tiny_run(fixtures_dir / "so100_v30_video", first)) == 0
    run_a = only_run_dir(first)

    # One update at a negligible rate: the weights must still be run A's best, so training started there.
    second = tmp_path / "b"
    args = [*tiny_run(fixtures_dir / "so100_v21_video", second), "--init_from", str(run_a),
            "--num_epochs", "0", "--steps", "1", "--learning_rate", "1e-12"]
    assert cli.main(args) == 0
    start = load_checkpoint(run_a / "policy_best.ckpt")
    end = load_checkpoint(only_run_dir(second) / "policy_last.ckpt")
    for key in start:
        torch.testing.assert_close(end[key], start[key], rtol=0, atol=1e-8)
    m = manifest(second)
    assert m["init_from"]["path"] == str(run_a / "policy_best.ckpt") and len(m["init_from"]["sha256"]) == 64
    assert m["dataset"]["path"].endswith("so100_v21_video")  # stats from the new data

    third = tmp_path / "c"
    capsys.readouterr()
    rc = cli.main([*tiny_run(fixtures_dir / "so100_v21_video", third), "--init_from", str(run_a),
                   "--chunk_size", "20"])
    err = capsys.readouterr().err
    # the first mismatch: the CVAE encoder's sinusoid table, one row per action + [CLS] + qpos
    assert rc == 2 and "model.pos_table has shape (1, 12, 64) there and (1, 22, 64) in this model" in err
    assert not list((third / "checkpoints").glob("*/policy_*.ckpt"))  # refused before training


def test_a_missing_init_checkpoint_is_a_usage_error_before_conversion(tmp_path, fixtures_dir, capsys):
    rc = cli.main([*tiny_run(fixtures_dir / "so100_v30_video", tmp_path / "o"), "--init_from",
                   str(tmp_path / "nowhere")])
    assert rc == 2 and "--init_from" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_augmentation_is_the_documented_transform_and_a_function_of_the_step():
    from act.augment import AugmentConfig, augment_images, step_generator

    cpu = torch.device("cpu")
    images = torch.randint(0, 256, (4, 2, 3, 24, 32), dtype=torch.uint8)
    # Identity settings (no crop, no jitter) give the image back, as floats in 0..1.
    same = augment_images(images, AugmentConfig(1.0, 0.0, 0.0, 0.0), step_generator(cpu, 0, 0, 0))
    torch.testing.assert_close(same, images.float() / 255, rtol=0, atol=1e-5)
    # Brightness alone scales every pixel by one factor per image, within the documented range.
    bright = augment_images(torch.full((8, 1, 3, 4, 4), 100, dtype=torch.uint8),
                            AugmentConfig(1.0, 0.2, 0.0, 0.0), step_generator(cpu, 0, 0, 0))
    factors = bright[:, 0, 0, 0, 0] / (100 / 255)
    assert torch.all((factors >= 0.8 - 1e-6) & (factors <= 1.2 + 1e-6)) and factors.std() > 0.01
    assert torch.allclose(bright, bright[:, :, :1, :1, :1].expand_as(bright))  # uniform per image
    # The default transform changes the images, stays in range, and repeats for the same step only.
    a = augment_images(images, AugmentConfig(), step_generator(cpu, 42, 0, 7))
    b = augment_images(images, AugmentConfig(), step_generator(cpu, 42, 0, 7))
    c = augment_images(images, AugmentConfig(), step_generator(cpu, 42, 0, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and (a - images.float() / 255).abs().mean() > 0.01


def test_augment_flag_trains_and_is_recorded(tmp_path, fixtures_dir):
    out = tmp_path / "out"
    assert cli.main([*tiny_run(fixtures_dir / "so100_v30_video", out), "--augment", "--num_epochs", "1"]) == 0
    m = manifest(out)
    assert m["augmentation"] == {"crop_scale": 0.9, "brightness": 0.2, "contrast": 0.2, "saturation": 0.5}
    assert m["arguments"]["augment"] is True and m["status"] == "completed"
