"""Frame storage through the training CLI (issue 16): the default compact storage, --image_size
on every input kind, the --convert_dir cache shared by runs, and the free-space check.

Whole runs of the real CLI on a real fixture (tiny model, a few steps), in-process to pay the
interpreter start-up once. The free-space case converts onto a real small tmpfs (skipped where
this process may not mount one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_train_e2e import TINY, only_run_dir

import train_lerobot_to_act as cli
from act.data import EpisodeFrames
from act.policy import ACTRunner, replay
from lerobot_bridge.convert import convert_dataset, estimate_conversion_bytes

SMALL = ["--batch_size", "4", "--chunk_size", "10", "--val_samples", "8", "--num_epochs", "1",
         "--max_episodes", "3", *TINY]


def run(inp: Path, out: Path, *extra: str) -> int:
    return cli.main(["--input_dir", str(inp), "--output_dir", str(out), *SMALL, *extra])


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def tree(root: Path) -> dict[str, int]:
    """Every file under root with its size: what a run left there (empty lock files aside)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_default_storage_is_jpeg_and_a_resized_run_records_its_image_size(tmp_path, fixtures_dir):
    inp = fixtures_dir / "so100_v30_video"
    out = tmp_path / "out"
    assert run(inp, out, "--keep_converted_hdf5", "--image_size", "48x64") == 0
    m = manifest(out)
    assert m["status"] == "completed"
    extra = m["conversion"]["extra"]
    assert (extra["storage"], extra["jpeg_quality"], extra["image_size"]) == ("jpeg", 75, [48, 64])
    assert m["dataset"]["image_shapes"] == {"front": [48, 64, 3], "wrist": [48, 64, 3]}
    run_dir = only_run_dir(out)
    cfg = json.loads((run_dir / "policy_config.json").read_text())
    assert cfg["image_size"] == [48, 64]
    episode = out / "converted_hdf5" / "episode_0.hdf5"
    with h5py.File(episode, "r") as f:
        assert bool(f.attrs["compress"]) is True
        assert f["observations/images/front"].dtype == np.uint8 and f["observations/images/front"].ndim == 2
        assert f["compress_len"].shape == (2, f["action"].shape[0])
    # The trained policy replays the compressed episode, and camera frames of another size (here
    # 10x the trained size, as a robot's camera would feed them) are resized to 48x64 by ACTRunner.
    runner = ACTRunner.from_run_dir(run_dir)
    errors = replay(runner, episode, max_steps=5)
    assert errors.shape == (5, 6) and np.isfinite(errors).all()
    frames = EpisodeFrames(episode, ["front", "wrist"])
    small = {cam: frames.frame(i, 0, (48, 64, 3)) for i, cam in enumerate(["front", "wrist"])}
    big = {cam: np.repeat(np.repeat(img, 10, axis=0), 10, axis=1) for cam, img in small.items()}
    runner.reset()
    a_small = runner.predict_chunk(frames.qpos[0], small)
    a_big = runner.predict_chunk(frames.qpos[0], big)  # area resize of a 10x blow-up = the frame itself
    np.testing.assert_allclose(a_big, a_small, atol=1e-5)
    frames.close()


def test_raw_storage_keeps_upstream_layout_and_has_another_fingerprint(tmp_path, fixtures_dir):
    inp = fixtures_dir / "so100_v30_video"
    args = cli.build_parser().parse_args(["--input_dir", str(inp), "--output_dir", str(tmp_path / "o"),
                                          "--gpus", "cpu", "--max_episodes", "2"])
    cli.validate_args(args, 0)
    jpeg = cli.plan_conversion(args)
    args.storage = "raw"
    raw = cli.plan_conversion(args)
    assert jpeg.options["storage"] == "jpeg" and "storage" not in raw.options  # raw: the old fingerprint
    assert jpeg.fingerprint != raw.fingerprint
    result, reused = cli.convert_input(args, tmp_path / "conv", raw)
    assert not reused
    with h5py.File(result.hdf5_paths[0], "r") as f:
        assert not f.attrs.get("compress", False)
        assert f["observations/images/front"].shape[1:] == (72, 96, 3)  # the fixture's video size


def test_convert_dir_converts_once_and_runs_never_delete_the_cache(tmp_path, fixtures_dir):
    inp = fixtures_dir / "so100_v30_video"
    cache = tmp_path / "cache"
    assert run(inp, tmp_path / "a", "--convert_dir", str(cache)) == 0
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    first = manifest(tmp_path / "a")["conversion"]
    assert first["reused"] is False and first["cache"] is True and first["directory"] == str(entry)
    assert entry.name == first["fingerprint"][:24]
    before = tree(cache)
    mtimes = {p: p.stat().st_mtime_ns for p in entry.iterdir()}

    # A second run elsewhere reuses the entry without writing to it, and leaves it in place.
    assert run(inp, tmp_path / "b", "--convert_dir", str(cache), "--seed", "7") == 0
    second = manifest(tmp_path / "b")["conversion"]
    assert second["reused"] is True and second["directory"] == str(entry)
    assert tree(cache) == before
    assert {p: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes
    assert not (tmp_path / "b" / ".converted_hdf5_tmp").exists()

    # Other options: another entry beside the first, which stays as it was.
    assert run(inp, tmp_path / "c", "--convert_dir", str(cache), "--storage", "raw") == 0
    entries = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert len(entries) == 2 and entry.name in entries
    assert {k: v for k, v in tree(cache).items() if k.startswith(entry.name)} == before

    # A run that fails after converting (here: a usage error found when preparing the run) leaves
    # the cache entry it reused untouched.
    (tmp_path / "d" / "checkpoints").mkdir(parents=True)
    rc = run(inp, tmp_path / "d", "--convert_dir", str(cache), "--resume")
    assert rc == 2
    assert {k: v for k, v in tree(cache).items() if k.startswith(entry.name)} == before


def test_convert_dir_removes_only_a_dead_runs_temporary_and_refuses_a_damaged_entry(tmp_path, fixtures_dir,
                                                                                     capsys):
    inp = fixtures_dir / "so100_v30_video"
    cache = tmp_path / "cache"
    args = cli.build_parser().parse_args(["--input_dir", str(inp), "--output_dir", str(tmp_path / "o"),
                                          "--gpus", "cpu", "--max_episodes", "2",
                                          "--convert_dir", str(cache)])
    cli.validate_args(args, 0)
    plan = cli.plan_conversion(args)
    entry = cli.conversion_dir(args, plan.fingerprint)
    stale = cache / f".{entry.name}.tmp-somehost-99999"  # a killed run's partial conversion
    (stale / "sub").mkdir(parents=True)
    other = cache / "not_ours"  # something else in the cache folder
    other.mkdir()
    (other / "keep.txt").write_text("x")
    result, reused = cli.convert_input(args, entry, plan)
    assert not reused and not stale.exists() and (other / "keep.txt").read_text() == "x"
    assert [p.parent for p in result.hdf5_paths] == [entry, entry]
    # conversion.json names the entry, not the temporary folder it was written in
    assert json.loads((entry / "conversion.json").read_text())["output_dir"] == str(entry)

    # A damaged entry (a file removed by hand) is refused with a message and left as it is.
    result.hdf5_paths[1].unlink()
    out = tmp_path / "o"
    rc = run(inp, out, "--max_episodes", "2", "--convert_dir", str(cache))
    err = capsys.readouterr().err
    assert rc == 2 and str(entry) in err and "delete that folder to convert again" in err
    assert result.hdf5_paths[0].exists() and (entry / "conversion.json").exists()
    assert manifest(out)["status"] == "failed"

    # An entry whose record names another fingerprint (copied or edited by hand) is refused too.
    other_entry = cache / "ffff"
    entry.rename(other_entry)
    record = json.loads((other_entry / "conversion.json").read_text())
    other_entry.rename(entry)
    record["fingerprint"] = "0" * 64
    (entry / "conversion.json").write_text(json.dumps(record))
    shutil.copy(result.hdf5_paths[0], result.hdf5_paths[1])  # every file there again
    rc = run(inp, out, "--max_episodes", "2", "--convert_dir", str(cache))
    assert rc == 2 and "delete that folder to convert again" in capsys.readouterr().err
    assert json.loads((entry / "conversion.json").read_text())["fingerprint"] == "0" * 64  # untouched


@pytest.mark.parametrize(("bad", "message"), [
    (["--convert_dir", "IN/meta"], "overlaps --input_dir"),
    (["--convert_dir", "OUT/checkpoints/x"], "which the run replaces"),
    (["--jpeg_quality", "0"], "--jpeg_quality must be in 1..100"),
])
def test_bad_storage_flags_exit_2_before_any_work(bad, message, tmp_path, fixtures_dir, capsys):
    inp = tmp_path / "in"
    shutil.copytree(fixtures_dir / "so100_v30_video", inp)
    out = tmp_path / "out"
    bad = [b.replace("IN", str(inp)).replace("OUT", str(out)) for b in bad]
    rc = cli.main(["--input_dir", str(inp), "--output_dir", str(out), "--gpus", "cpu", *bad])
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_estimate_bounds_what_the_conversion_writes(tmp_path, fixtures_dir):
    inp = fixtures_dir / "so100_v30_video"
    for options in ({"storage": "raw"}, {"storage": "jpeg", "jpeg_quality": 75},
                    {"storage": "jpeg", "jpeg_quality": 75, "image_size": (96, 128)}):
        out = tmp_path / "_".join(str(v) for v in options.values())
        convert_dataset(inp, out, workers=1, max_episodes=2, **options)
        written = sum(p.stat().st_size for p in out.glob("episode_*.hdf5"))
        estimate = estimate_conversion_bytes(inp, max_episodes=2, **options)
        assert written <= estimate <= 3 * written, (options, written, estimate)


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB file system (tmpfs), where this process may mount one."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_conversion_that_does_not_fit_exits_2_before_writing_and_names_the_sizes(small_disk, tmp_path,
                                                                                  fixtures_dir, capsys):
    inp = fixtures_dir / "so100_v30_video"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    needed = estimate_conversion_bytes(inp, max_episodes=3)  # raw: 3 episodes x 2 cameras x 480x640
    assert needed > free
    out = small_disk / "out"
    rc = run(inp, out, "--storage", "raw")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "not enough free space" in err and f"({needed} bytes" in err and str(small_disk) in err
    assert "--storage jpeg" in err and "--image_size 240x320" in err and "--convert_dir" in err
    m = manifest(out)
    assert m["status"] == "failed" and "not enough free space" in m["error"]
    assert not (out / ".converted_hdf5_tmp").exists() and not (out / "checkpoints").exists()
    # The flags the message names make it fit: 3 episodes at 48x64 JPEG are tens of KB (the
    # checkpoints, 45 MB each with the ResNet18 backbone, go to an output folder elsewhere).
    cache = small_disk / "cache"
    assert run(inp, tmp_path / "o2", "--image_size", "48x64", "--convert_dir", str(cache)) == 0
    assert manifest(tmp_path / "o2")["status"] == "completed"
    # Through the cache the check applies where the cache is, and leaves nothing there.
    before = tree(cache)
    rc = run(inp, tmp_path / "o3", "--storage", "raw", "--convert_dir", str(cache))
    assert rc == 2 and "not enough free space" in capsys.readouterr().err
    assert tree(cache) == before
