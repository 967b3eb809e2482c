"""The LeRobot export (act/export_lerobot.py) against real LeRobot's recorded behaviour.

tests/data/lerobot_export/ was written by scripts/check_lerobot_export.py in a separate
environment with lerobot installed (version in lerobot_check.json): it loaded exports of the
same deterministic runs with LeRobot's own from_pretrained (strict) + processors and recorded
its actions on fixed raw inputs. Here we rebuild those runs, export them, and check:
- the export is byte-identical in weights to what LeRobot loaded (same safetensors sha256);
- our ACTRunner gives LeRobot's actions: max abs difference <= ATOL (measured: <= 3.9e-6 on
  actions up to ~6.4 in size; the difference is float summation order and LeRobot's
  std + 1e-8 denominator);
- the files equal what LeRobot itself writes for that config (config.json, processor JSON,
  state_dict names and shapes);
- what cannot be expressed is refused with nothing written.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from act.checkpoint import POLICY_CONFIG_NAME, load_checkpoint
from act.config import ACTConfig
from act.export_lerobot import ExportError, export_lerobot
from act.policy import ACTRunner

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "lerobot_export"
ATOL = 2e-5  # absolute, in action units (robot units); see the module doc for the measured value


def _load_check_script():
    spec = importlib.util.spec_from_file_location("check_lerobot_export", REPO / "scripts" /
                                                  "check_lerobot_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_check_script()
RECORD = json.loads((FIXTURES / "lerobot_check.json").read_text())


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runner_chunks(run: Path, qpos: np.ndarray, images: np.ndarray) -> np.ndarray:
    runner = ACTRunner.from_run_dir(run)
    names = list(check.CAMERAS.values())
    return np.stack([runner.predict_chunk(qpos[b], {n: images[b, i] for i, n in enumerate(names)})
                     for b in range(len(qpos))])


def test_fixture_records_real_lerobot():
    assert RECORD["lerobot_version"] == "0.4.4"
    assert set(RECORD["cases"]) == set(check.CASES)
    for case, result in RECORD["cases"].items():
        # LeRobot re-saved what it loaded from our export: every file identical
        assert all(result["lerobot_resave_identical"].values()), (case, result["lerobot_resave_identical"])


@pytest.mark.parametrize("case", list(check.CASES))
def test_act_runner_matches_lerobot(tmp_path, case):
    run = check.make_reference_run(tmp_path / "out", case)
    export_dir = tmp_path / "lerobot_policy"
    export_lerobot(run, export_dir)
    # The same weights LeRobot ran (numpy-seeded, so any torch rebuilds them)
    assert _sha256(export_dir / "model.safetensors") == RECORD["cases"][case]["model_safetensors_sha256"], \
        "the reference run changed: re-run scripts/check_lerobot_export.py in the lerobot environment"
    data = np.load(FIXTURES / f"{case}.npz")
    qpos, images, lerobot_actions = data["qpos"], data["images"], data["actions"]
    want_qpos, want_images = check.reference_inputs(case)
    assert np.array_equal(qpos, want_qpos) and np.array_equal(images, want_images)
    ours = _runner_chunks(run, qpos, images)
    assert ours.shape == lerobot_actions.shape == (check.BATCH, check.BASE["chunk_size"],
                                                   check.BASE["action_dim"])
    diff = np.abs(ours - lerobot_actions).max()
    assert diff <= ATOL, f"max |ACTRunner - LeRobot| = {diff}"
    # The comparison has teeth: other images (measured >= 0.33) or another qpos (>= 0.1) change the
    # actions by far more than ATOL. (Swapping the cameras does not: they share the backbone and
    # the position map, and attention ignores token order.)
    assert np.abs(_runner_chunks(run, qpos, 255 - images) - lerobot_actions).max() > 1000 * ATOL
    assert np.abs(_runner_chunks(run, qpos + 1, images) - lerobot_actions).max() > 1000 * ATOL


def test_files_equal_what_lerobot_writes(tmp_path):
    run = check.make_reference_run(tmp_path / "out", "upstream_decoder")
    export_dir = tmp_path / "lerobot_policy"
    export_lerobot(run, export_dir)
    written = FIXTURES / "lerobot_written"
    for name in ("config.json", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert json.loads((export_dir / name).read_text()) == json.loads((written / name).read_text()), name
    shapes = {k: list(v.shape) for k, v in load_file(str(export_dir / "model.safetensors")).items()}
    assert shapes == json.loads((written / "state_dict_shapes.json").read_text())
    info = json.loads((export_dir / "train_act_export.json").read_text())
    assert info["cameras"] == {"top": "observation.images.top", "wrist": "observation.images.wrist"}
    assert info["state_names"] == ["joint_0", "joint_1", "joint_2"]
    # upstream mode: only decoder layer 0 is written, layers 1..2 and is_pad_head are dropped
    assert "model.transformer.decoder.layers.1.linear1.weight" in info["dropped_keys"]
    assert "model.is_pad_head.weight" in info["dropped_keys"]


def test_normalizer_state_holds_run_stats(tmp_path):
    from act.stats import load_stats

    run = check.make_reference_run(tmp_path / "out", "upstream_decoder")
    export_lerobot(run, tmp_path / "p")
    state = load_file(str(tmp_path / "p" / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
    stats = load_stats(run / "dataset_stats.pkl")
    assert np.array_equal(state["observation.state.mean"].numpy(), stats["qpos_mean"])
    assert np.array_equal(state["action.std"].numpy(), stats["action_std"])
    assert state["observation.images.top.mean"].shape == (3, 1, 1)
    post = load_file(str(tmp_path / "p" / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"))
    assert set(post) == set(state)


def _assert_refused(run: Path, out: Path, match: str, **kwargs) -> None:
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) if out.exists() else None
    with pytest.raises(ExportError, match=match):
        export_lerobot(run, out, **kwargs)
    after = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) if out.exists() else None
    assert after == before  # nothing written, nothing touched
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


def test_refusals_write_nothing(tmp_path):
    run = check.make_reference_run(tmp_path / "out", "upstream_decoder")
    # a key upstream ACT does not have
    state = load_checkpoint(run / "policy_best.ckpt")
    torch.save({**state, "model.extra_head.weight": torch.zeros(2, 2)}, run / "odd.ckpt")
    _assert_refused(run, tmp_path / "a", "extra_head", checkpoint="odd.ckpt")
    # a checkpoint that does not match its config
    cfg = ACTConfig.load_json(run / POLICY_CONFIG_NAME)
    cfg.hidden_dim = 64
    cfg.save_json(run / POLICY_CONFIG_NAME)
    _assert_refused(run, tmp_path / "b", "does not match")
    cfg.hidden_dim = 32
    cfg.save_json(run / POLICY_CONFIG_NAME)
    # image size unknown (no manifest) unless given
    (tmp_path / "out" / "manifest.json").unlink()
    _assert_refused(run, tmp_path / "c", "image size unknown")
    export_lerobot(run, tmp_path / "c", image_size=(48, 64))
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["input_features"]["observation.images.top"]["shape"] == [3, 48, 64]
    # an output folder in use
    _assert_refused(run, tmp_path / "c", "not an empty folder")
    # n_action_steps beyond the chunk
    _assert_refused(run, tmp_path / "d", "n_action_steps", image_size=(48, 64), n_action_steps=99)


def test_all_decoder_layers_maps_to_n_decoder_layers(tmp_path):
    run = check.make_reference_run(tmp_path / "out", "all_decoder_layers")
    export_lerobot(run, tmp_path / "p")
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["n_decoder_layers"] == 3
    keys = load_file(str(tmp_path / "p" / "model.safetensors"))
    assert "model.decoder.layers.2.norm3.weight" in keys


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("export_lerobot_cli",
                                                  REPO / "scripts" / "export_lerobot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    run = check.make_reference_run(tmp_path / "out", "upstream_decoder")
    assert cli.main(["--run_dir", str(run), "--out", str(tmp_path / "p"), "--temporal_ensemble"]) == 0
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert (config["temporal_ensemble_coeff"], config["n_action_steps"]) == (0.01, 1)
    assert cli.main(["--run_dir", str(run), "--out", str(tmp_path / "p")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
