"""train_lerobot_to_act.py: arguments, their validation before any work, and bad datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import train_lerobot_to_act as cli

ISSUE_ARGUMENTS = {  # issue 4: names and defaults exactly
    "batch_size": 64, "num_epochs": 12000, "steps": 0, "learning_rate": 5e-5, "save_interval": 6000,
    "gpus": "all", "batch_mode": "fixed_global", "num_workers": 0, "task_name": "auto", "run_name": "auto",
    "policy_class": "ACT", "kl_weight": 10, "chunk_size": 100, "hidden_dim": 512, "dim_feedforward": 3200,
    "seed": 42, "camera_keys": None, "camera_names": None, "episode_len": 0, "idle_threshold": 1e-4,
    "max_episodes": 0, "convert_workers": 0, "keep_converted_hdf5": False, "input_dir": "/data/input",
    "output_dir": "/data/output", "lr_backbone": None, "backbone_weights": None, "val_ratio": 0.2,
    "precision": "auto",
}


def test_every_issue_argument_exists_with_its_default_and_help(capsys, monkeypatch):
    # The image sets ACT_INPUT_DIR / ACT_OUTPUT_DIR (Dockerfile): there the defaults are /data/...
    monkeypatch.setenv("ACT_INPUT_DIR", "/data/input")
    monkeypatch.setenv("ACT_OUTPUT_DIR", "/data/output")
    args = cli.build_parser().parse_args([])
    for name, default in ISSUE_ARGUMENTS.items():
        assert getattr(args, name) == default, name
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in [*ISSUE_ARGUMENTS, "use_all_decoder_layers", "nheads", "enc_layers", "dec_layers", "resume",
                 "fresh"]:
        assert f"--{name}" in text, name


def test_comma_or_space_separated_camera_lists():
    args = cli.build_parser().parse_args(["--camera_keys", "a,b", "c", "--camera_names", "x", "y,z",
                                          "--gpus", "cpu", "--input_dir", "in", "--output_dir", "out"])
    cli.validate_args(args, 0)
    assert args.camera_keys == ["a", "b", "c"] and args.camera_names == ["x", "y", "z"]
    assert args.lr_backbone == args.learning_rate  # default: the learning rate


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--policy_class", "Diffusion"], "supported: ACT"),
        (["--steps", "100"], "add --num_epochs 0"),
        (["--num_epochs", "0"], "needs --steps N"),
        (["--gpus", "0,1"], "visible GPU ids: none"),
        (["--gpus", "cpu:4", "--batch_size", "2"], "smaller than the 4 processes"),
        (["--resume", "--fresh"], "pick one"),
        (["--precision", "bf16", "--gpus", "cpu"], "needs a CUDA GPU"),
        (["--camera_keys", "a", "b", "--camera_names", "x"], "one name per key"),
        (["--camera_names", "x"], "needs --camera_keys"),
        (["--hidden_dim", "30", "--nheads", "4"], "divisible by --nheads"),
        (["--val_ratio", "1"], "--val_ratio must be in [0, 1)"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--learning_rate", "0"], "--learning_rate must be > 0"),
        (["--run_name", "../escape"], "--run_name"),
        (["--backbone_weights", "/nonexistent.pth"], "--backbone_weights /nonexistent.pth: no such file"),
    ],
)
def test_bad_combinations_exit_2_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["--input_dir", str(tmp_path / "missing"), "--output_dir", str(out), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err, err
    assert not out.exists()  # nothing was created: the check came first


def run_bad_dataset(tmp_path: Path, input_dir: Path, capsys) -> tuple[int, str]:
    """A dataset that fails validation: exit 2, and the output folder is not even created (the
    metadata is read before anything is written)."""
    out = tmp_path / "out"
    rc = cli.main(["--input_dir", str(input_dir), "--output_dir", str(out), "--gpus", "cpu",
                   "--hidden_dim", "64", "--dim_feedforward", "128", "--backbone_weights", "none"])
    assert not out.exists()
    return rc, capsys.readouterr().err


def test_missing_input_dir_exits_2_and_writes_nothing(tmp_path, capsys):
    rc, err = run_bad_dataset(tmp_path, tmp_path / "nothing_here", capsys)
    assert rc == 2 and "nothing_here" in err and "does not exist" in err


def test_folder_without_a_dataset_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, err = run_bad_dataset(tmp_path, tmp_path / "empty", capsys)
    assert rc == 2 and "meta/info.json" in err


def test_broken_info_json_exits_2_naming_the_file(tmp_path, capsys, fixtures_dir):
    root = tmp_path / "ds"
    shutil.copytree(fixtures_dir / "so100_v30_video", root)
    (root / "meta" / "info.json").write_text("{not json")
    rc, err = run_bad_dataset(tmp_path, root, capsys)
    assert rc == 2 and "info.json" in err


def test_unknown_camera_key_exits_2_listing_the_available_ones(tmp_path, capsys, fixtures_dir):
    out = tmp_path / "out"
    rc = cli.main(["--input_dir", str(fixtures_dir / "so100_v30_video"), "--output_dir", str(out),
                   "--gpus", "cpu", "--camera_keys", "observation.images.top"])
    err = capsys.readouterr().err
    assert rc == 2 and "observation.images.front" in err and "observation.images.wrist" in err


def test_innate_training_manager_names_are_aliases(tmp_path, capsys):
    out = tmp_path / "out"
    from lerobot_bridge.innate import rewrite_innate_args

    argv = rewrite_innate_args(["--max_steps", "5", "--learning_rate_backbone", "1e-6", "--gpus", "cpu",
                                "--input_dir", str(tmp_path / "missing"), "--output_dir", str(out)])
    args = cli.build_parser().parse_args(argv)
    cli.validate_args(args, 0)
    assert (args.num_epochs, args.steps, args.lr_backbone) == (0, 5, 1e-6)


def test_innate_input_keeps_the_cameras_named_by_camera_keys(tmp_path):
    """--camera_keys reaches the Innate importer (camera names or HDF5 paths), and an unchanged
    second call reuses the conversion through the importer's fingerprint."""
    from test_innate_import import write_skill

    src = write_skill(tmp_path / "skill", "observations", [9, 9])
    args = cli.build_parser().parse_args(["--input_dir", str(tmp_path / "skill"), "--gpus", "cpu",
                                          "--output_dir", str(tmp_path / "out"),
                                          "--camera_keys", "camera_2", "--camera_names", "arm",
                                          "--storage", "raw"])  # exact frames to compare
    cli.validate_args(args, 0)
    result, reused = cli.convert_input(args, tmp_path / "conv", cli.plan_conversion(args))
    assert not reused and result.cameras == {"observations/images/camera_2": "arm"}
    with h5py.File(result.hdf5_paths[1], "r") as f:
        assert list(f["observations/images"]) == ["arm"]
        np.testing.assert_array_equal(f["observations/images/arm"][()], src[1]["frames"]["b"][..., ::-1])
    again, reused = cli.convert_input(args, tmp_path / "conv", cli.plan_conversion(args))
    assert reused and again == result


def test_untrained_hold_note_only_when_final_holds_are_trimmed_and_not_padded_back():
    from lerobot_bridge.types import EpisodeReport

    def report(i: int, frames_out: int, trimmed_end: int) -> EpisodeReport:
        return EpisodeReport(output_index=i, source_index=i, task="t", frames_in=frames_out + trimmed_end,
                             frames_out=frames_out, idle_trimmed_end=trimmed_end)

    episodes = [report(0, 12, 5), report(1, 23, 0), report(2, 17, 3)]
    note = cli.untrained_hold_note(episodes, episode_len=0)
    assert note is not None
    assert "final hold of 2 of 3 episodes" in note and "--episode_len 23" in note
    assert cli.untrained_hold_note(episodes, episode_len=30) is None  # padded back with a hold
    assert cli.untrained_hold_note([report(0, 12, 0)], episode_len=0) is None  # nothing trimmed


def test_innate_colour_order_and_image_size_reach_the_importer(tmp_path):
    """--color_order and --image_size (issue 12 item 7, issue 13): the training CLI hands them to
    the Innate importer; the frames come out in the order asked for, resized by area averaging."""
    from test_innate_import import write_skill

    from lerobot_bridge.innate import resize_area

    src = write_skill(tmp_path / "skill", "observations", [9, 9])
    args = cli.build_parser().parse_args(["--input_dir", str(tmp_path / "skill"), "--gpus", "cpu",
                                          "--output_dir", str(tmp_path / "out"), "--camera_keys", "camera_2",
                                          "--color_order", "rgb", "--image_size", "6X8",
                                          "--storage", "raw"])
    cli.validate_args(args, 0)
    assert args.image_size == "6x8"
    plan = cli.plan_conversion(args)
    assert plan.options["color_order"] == "rgb" and plan.options["image_size"] == (6, 8)
    result, _ = cli.convert_input(args, tmp_path / "conv", plan)
    with h5py.File(result.hdf5_paths[1], "r") as f:
        got = f["observations/images/camera_2"][()]
    np.testing.assert_array_equal(got, resize_area(src[1]["frames"]["b"], (6, 8)))  # no BGR swap


def test_innate_only_options_on_a_lerobot_dataset_exit_2(tmp_path, capsys, fixtures_dir):
    out = tmp_path / "out"
    rc = cli.main(["--input_dir", str(fixtures_dir / "so100_v30_video"), "--output_dir", str(out),
                   "--gpus", "cpu", "--color_order", "bgr"])
    assert rc == 2 and "applies to Innate / ACT HDF5 inputs only" in capsys.readouterr().err
    assert not out.exists()


def test_bad_image_size_is_a_usage_error(tmp_path, capsys):
    rc = cli.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                   "--image_size", "224"])
    assert rc == 2 and "--image_size 224: expected HxW" in capsys.readouterr().err
