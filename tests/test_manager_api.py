"""Training Manager API (manager/): every route on copies of the LeRobot fixtures, refusals included.

Runs are exercised with a stand-in for the training CLI (a small script that writes a manifest and
metrics like the CLI and exits 143 on SIGTERM), so the process handling is tested in seconds; the
real CLI is launched, stopped and resumed in tests/test_manager_browser.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.dataset import open_dataset
from lerobot_bridge.synthetic import read_frame_code
from manager import runs as manager_runs
from manager.app import create_app
from manager.cli import resolve_token

FIXTURES = Path(__file__).parent / "data" / "lerobot"
NAMES = ("so100_v30_video", "so100_v21_video", "so100_v30_image")


def decode_png(data: bytes) -> np.ndarray:
    """The manager's PNGs (8-bit RGB, filter 0 on every row) -> (H, W, 3) uint8."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * 3)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    data, out = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    for name in NAMES:
        shutil.copytree(FIXTURES / name, data / name)
    return data, out


@pytest.fixture()
def client(roots) -> TestClient:
    data, out = roots
    with TestClient(create_app(data, out)) as c:
        yield c


# ------------------------------------------------------------------------------------------- datasets


def test_datasets_lists_every_fixture_with_its_card(client: TestClient) -> None:
    body = client.get("/api/datasets").json()
    cards = {c["path"]: c for c in body["datasets"]}
    assert set(cards) == set(NAMES)
    card = cards["so100_v30_video"]
    assert card["kind"] == "lerobot" and card["version"] == "v3.0" and card["error"] is None
    assert (card["episodes"], card["frames"], card["fps"]) == (5, 275, 30.0)
    assert [c["name"] for c in card["cameras"]] == ["front", "wrist"]
    assert (card["cameras"][0]["height"], card["cameras"][0]["width"], card["cameras"][0]["codec"]) == (
        72,
        96,
        "av1",
    )
    assert (card["state_dim"], card["action_dim"]) == (6, 6)
    assert set(card["tasks"]) == {
        "Grasp the red block and place it in the bin.",
        "Push the blue block to the left side.",
    }
    assert card["size_bytes"] > 100_000 and card["used_by"] == []
    assert cards["so100_v21_video"]["version"] == "v2.1"
    assert cards["so100_v30_image"]["cameras"][0]["dtype"] == "image"


def test_dataset_listing_is_lazy_on_a_large_dataset(tmp_path: Path) -> None:
    """1000 episodes listed from metadata alone: no data rows, no video."""
    from lerobot_bridge.writer import EpisodeData, write_lerobot_v30

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    eps = [
        EpisodeData(
            rng.random((2, 2), np.float32),
            rng.random((2, 2), np.float32),
            {"cam": np.zeros((2, 8, 8, 3), np.uint8)},
            "t",
        )
        for _ in range(1000)
    ]
    write_lerobot_v30(data / "big", eps, fps=10, gop=10)
    with TestClient(create_app(data, tmp_path / "runs")) as c:
        t0 = time.perf_counter()
        body = c.get("/api/dataset", params={"path": "big"}).json()
        seconds = time.perf_counter() - t0
    assert body["card"]["episodes"] == 1000 and len(body["episodes"]) == 1000
    assert seconds < 3.0, seconds


def test_episode_flags_are_the_bridges_checks(client: TestClient) -> None:
    flags = client.get("/api/dataset/flags", params={"path": "so100_v30_video"}).json()["flags"]
    assert [f["index"] for f in flags] == [0, 1, 2, 3, 4]
    for f in flags:  # fixture: 4 idle frames at the start, 6 at the end, every episode 35..75 frames
        assert (f["idle_start"], f["idle_end"], f["frozen_actions"], f["nan"], f["error"]) == (
            4,
            6,
            False,
            False,
            None,
        )
        assert f["short"] is True and f["chunk_size"] == 100
    flags = client.get("/api/dataset/flags", params={"path": "so100_v30_video", "chunk_size": 40}).json()[
        "flags"
    ]
    assert [f["short"] for f in flags] == [f["length"] < 40 for f in flags]


def _rewrite_actions(root: Path, change) -> None:
    path = next((root / "data").rglob("*.parquet"))
    table = pq.read_table(path)
    action = table.column("action").combine_chunks()
    values = action.flatten().to_numpy().reshape(len(action), -1).copy()
    change(values, table.column("episode_index").to_numpy())
    col = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), values.shape[1])
    table = table.set_column(table.schema.get_field_index("action"), "action", col)
    pq.write_table(table, path)


def test_flags_nan_and_frozen_actions(roots) -> None:
    data, out = roots

    def nan_in_episode_1(values, episode):
        values[np.flatnonzero(episode == 1)[3], 2] = np.nan

    def freeze_episode_2(values, episode):
        values[episode == 2] = values[episode == 2][0]

    _rewrite_actions(data / "so100_v30_video", nan_in_episode_1)
    _rewrite_actions(data / "so100_v30_video", freeze_episode_2)
    with TestClient(create_app(data, out)) as c:
        flags = c.get("/api/dataset/flags", params={"path": "so100_v30_video"}).json()["flags"]
    assert flags[1]["nan"] is True and "action" in flags[1]["error"]
    assert flags[2]["frozen_actions"] is True and flags[0]["frozen_actions"] is False


def test_episode_rows_match_the_parquet(client: TestClient, roots) -> None:
    body = client.get("/api/dataset/episode", params={"path": "so100_v21_video", "episode": 3}).json()
    table = pq.read_table(roots[0] / "so100_v21_video/data/chunk-000/episode_000003.parquet")
    state = np.array(table.column("observation.state").to_pylist(), np.float32)
    assert np.array_equal(np.array(body["state"], np.float32), state)
    assert len(body["action"]) == len(state) == body["flags"]["length"]
    assert body["cameras"] == ["front", "wrist"] and body["fps"] == 30.0


@pytest.mark.parametrize("name", NAMES)
def test_frame_at_t_is_the_source_frame_t(client: TestClient, name: str) -> None:
    lengths = {
        e["index"]: e["length"] for e in client.get("/api/dataset", params={"path": name}).json()["episodes"]
    }
    for episode, t in ((0, 0), (2, 17), (4, lengths[4] - 1), (1, 3)):
        for camera in ("front", "wrist"):
            r = client.get(
                "/api/dataset/frame", params={"path": name, "episode": episode, "camera": camera, "t": t}
            )
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            img = decode_png(r.content)
            assert img.shape == (72, 96, 3)
            assert read_frame_code(img) == (t, episode), (name, episode, camera, t)


def test_frame_and_episode_not_found(client: TestClient) -> None:
    p = {"path": "so100_v30_video", "episode": 0, "camera": "front"}
    r = client.get("/api/dataset/frame", params={**p, "t": 9999})
    assert r.status_code == 404 and "out of range" in r.json()["detail"]
    r = client.get("/api/dataset/frame", params={**p, "camera": "nope", "t": 0})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = client.get("/api/dataset/episode", params={"path": "so100_v30_video", "episode": 9})
    assert r.status_code == 404 and "episodes 0..4" in r.json()["detail"]


# ------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("../runs", 403, "'..' is refused"),
        ("so100_v30_video/../../x", 403, "'..' is refused"),
        ("/etc", 403, "absolute paths are refused"),
        ("outside_link", 403, "leads outside the root"),
        ("does_not_exist", 404, "not found"),
        ("", 404, "not a dataset"),
    ],
)
def test_path_traversal_is_refused(roots, tmp_path: Path, path: str, status: int, message: str) -> None:
    data, out = roots
    secret = tmp_path / "secret_dataset"
    shutil.copytree(FIXTURES / "so100_v30_video", secret)
    (data / "outside_link").symlink_to(secret)
    with TestClient(create_app(data, out)) as c:
        for url, params in (
            ("/api/dataset", {"path": path}),
            ("/api/dataset/flags", {"path": path}),
            ("/api/dataset/frame", {"path": path, "episode": 0, "camera": "front", "t": 0}),
            ("/dataset", {"path": path}),
        ):
            r = c.get(url, params=params)
            assert r.status_code == status, (url, r.text)
            assert message in r.json()["detail"]
        r = c.post("/api/dataset/delete_episodes", json={"path": path, "episodes": [0], "target": "x"})
        assert r.status_code == status and message in r.json()["detail"]
        # a symlink out of the root is not even listed
        assert "outside_link" not in {d["path"] for d in c.get("/api/datasets").json()["datasets"]}
        for run_id in ("../data", "/tmp"):
            r = c.get("/api/run", params={"id": run_id})
            assert r.status_code == 403, r.text


def test_target_names_are_refused_outside_the_root(client: TestClient) -> None:
    for target, status, message in (
        ("../escape", 403, "'..' is refused"),
        ("/tmp/x", 403, "absolute"),
        ("", 422, "target name"),
        ("bad name!", 422, "target name"),
    ):
        r = client.post(
            "/api/dataset/delete_episodes",
            json={"path": "so100_v30_video", "episodes": [0], "target": target},
        )
        assert r.status_code == status, (target, r.text)
        assert message in r.json()["detail"]


# ------------------------------------------------------------------------------------------- curation


def _converted(root: Path, out: Path) -> list[dict]:
    result = convert_dataset(root, out, idle_threshold=0, workers=1, progress=False)
    episodes = []
    for path in result.hdf5_paths:
        with h5py.File(path, "r") as f:
            episodes.append(
                {
                    "qpos": f["observations/qpos"][:],
                    "action": f["action"][:],
                    "images": {c: f[f"observations/images/{c}"][:] for c in result.camera_names},
                }
            )
    return episodes


def test_delete_episodes_writes_a_new_dataset_that_converts_like_the_source(client, roots, tmp_path) -> None:
    data, _ = roots
    before = tree_digest(data / "so100_v30_video")
    r = client.post(
        "/api/dataset/delete_episodes",
        json={"path": "so100_v30_video", "episodes": [1, 3], "target": "curated/v30_clean"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "curated/v30_clean" and r.json()["deleted"] == [1, 3]
    assert tree_digest(data / "so100_v30_video") == before  # the original is never touched
    new = open_dataset(data / "curated/v30_clean")
    assert new.version == "v3.0" and [e.index for e in new.episodes] == [0, 1, 2]
    src = _converted(data / "so100_v30_video", tmp_path / "src")
    dst = _converted(data / "curated/v30_clean", tmp_path / "dst")
    for new_i, old_i in enumerate((0, 2, 4)):
        assert np.array_equal(dst[new_i]["qpos"], src[old_i]["qpos"])
        assert np.array_equal(dst[new_i]["action"], src[old_i]["action"])
        for cam, frames in src[old_i]["images"].items():
            got = dst[new_i]["images"][cam]
            assert got.shape == frames.shape
            codes = [read_frame_code(img) for img in got]
            assert codes == [(t, old_i) for t in range(len(frames))]  # every frame where it was
            # re-encoded (H.264 crf 0: lossless in YUV 4:2:0; what remains is the RGB <-> YUV rounding)
            assert np.abs(got.astype(int) - frames.astype(int)).mean() < 2.0
    # it shows up as a dataset; the same target again is refused and nothing is overwritten
    assert "curated/v30_clean" in {d["path"] for d in client.get("/api/datasets").json()["datasets"]}
    digest = tree_digest(data / "curated/v30_clean")
    r = client.post(
        "/api/dataset/delete_episodes",
        json={"path": "so100_v30_video", "episodes": [0], "target": "curated/v30_clean"},
    )
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert tree_digest(data / "curated/v30_clean") == digest
    r = client.post(
        "/api/dataset/delete_episodes",
        json={"path": "so100_v30_video", "episodes": [0], "target": "so100_v21_video"},
    )
    assert r.status_code == 409


def test_delete_refuses_bad_selections(client: TestClient) -> None:
    for episodes, message in (
        ([], "no episodes selected"),
        ([7], "not found"),
        ([0, 0], "more than once"),
        ([0, 1, 2, 3, 4], "empty"),
    ):
        r = client.post(
            "/api/dataset/delete_episodes",
            json={"path": "so100_v30_video", "episodes": episodes, "target": "x"},
        )
        assert r.status_code == 422 and message in r.json()["detail"], (episodes, r.text)


def test_edit_tasks_writes_a_new_dataset(client: TestClient, roots) -> None:
    data, _ = roots
    r = client.post(
        "/api/dataset/edit_tasks",
        json={
            "path": "so100_v21_video",
            "episodes": [0, 2],
            "task": "Pick up the cube.",
            "target": "v21_tasks",
        },
    )
    assert r.status_code == 201, r.text
    new, old = open_dataset(data / "v21_tasks"), open_dataset(data / "so100_v21_video")
    assert [e.tasks for e in new.episodes][0] == ["Pick up the cube."]
    assert new.episodes[2].tasks == ["Pick up the cube."]
    assert new.episodes[1].tasks == old.episodes[1].tasks and len(new.episodes) == 5
    r = client.post("/api/dataset/edit_tasks", json={"path": "so100_v21_video", "task": " ", "target": "t2"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_merge_compatible_datasets(client: TestClient, roots) -> None:
    data, _ = roots
    r = client.post(
        "/api/merge",
        json={
            "sources": [{"path": "so100_v30_video", "episodes": [0, 1]}, {"path": "so100_v21_video"}],
            "target": "merged",
        },
    )
    assert r.status_code == 201, r.text
    merged = open_dataset(data / "merged")
    assert len(merged.episodes) == 7
    assert r.json()["provenance"][2] == {"dataset": "so100_v21_video", "episode": 0}


def test_merge_refuses_incompatible_datasets(roots) -> None:
    data, out = roots
    shutil.copytree(FIXTURES / "so100_v30_video", data / "other_fps")
    info_path = data / "other_fps/meta/info.json"
    info = json.loads(info_path.read_text())
    info["fps"] = 15
    info["features"]["observation.state"]["names"] = [f"j{i}" for i in range(6)]
    info_path.write_text(json.dumps(info))
    with TestClient(create_app(data, out)) as c:
        r = c.post(
            "/api/merge",
            json={"sources": [{"path": "so100_v30_video"}, {"path": "other_fps"}], "target": "m"},
        )
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert "not compatible" in detail and "fps 15 vs 30" in detail and "names" in detail
        assert not (data / "m").exists()
        r = c.post("/api/merge", json={"sources": [{"path": "so100_v30_video"}], "target": "m"})
        assert r.status_code == 422 and "at least two" in r.json()["detail"]


# ------------------------------------------------------------------------------------------- runs

FAKE_CLI = r"""
import json, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--output_dir") + 1])
steps = int(args[args.index("--num_epochs") + 1]) if "--num_epochs" in args else 4
run_dir = out / "checkpoints" / "fake_run"
run_dir.mkdir(parents=True, exist_ok=True)
metrics = run_dir / "metrics.jsonl"
done = sum(1 for line in metrics.read_text().splitlines() if '"train"' in line) if metrics.exists() else 0
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def manifest(status, done):
    (out / "manifest.json").write_text(json.dumps({"status": status, "run_dir": str(run_dir),
        "arguments": {"input_dir": args[args.index("--input_dir") + 1], "num_epochs": steps},
        "dataset": {"path": args[args.index("--input_dir") + 1]}, "plan": {"steps": steps},
        "training": {"steps_planned": steps, "steps_completed": done},
        "best": {"val_loss": 1.0 / (done + 1), "val_l1": 0.5, "val_kl": 0.1, "val_l1_deploy": 0.4,
                 "val_l1_mean_action": 0.8, "epoch": done, "step": done}}))
print("fake cli starting at step", done, flush=True)
while done < steps:
    if stop:
        manifest("interrupted", done); print("SIGTERM: saved", flush=True); sys.exit(143)
    done += 1
    with metrics.open("a") as fh:
        fh.write(json.dumps({"kind": "train", "step": done, "l1": 1.0 / done, "kl": 0.1,
                             "time": "2026-01-01T00:00:%02d+00:00" % done}) + "\n")
    manifest("running", done)
    print("step", done, flush=True)
    time.sleep(0.3)
(run_dir / "policy_best.ckpt").write_bytes(b"ckpt")
manifest("completed", done)
print("done", flush=True)
"""


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_train_flags_are_the_clis_parser(client: TestClient) -> None:
    import train_lerobot_to_act

    flags = {f["name"]: f for f in client.get("/api/train_flags").json()["flags"]}
    defaults = vars(train_lerobot_to_act.build_parser().parse_args([]))
    for name, spec in flags.items():
        assert spec["default"] == defaults[name], name
    assert {"input_dir", "output_dir", "fresh", "resume"}.isdisjoint(flags)
    assert flags["batch_mode"]["choices"] == ["fixed_global", "fixed_per_gpu"]
    assert flags["use_all_decoder_layers"]["kind"] == "bool"


def test_run_form_refuses_bad_flags(client: TestClient, roots) -> None:
    for flags, message in (
        ({"not_a_flag": 1}, "unknown flag"),
        ({"batch_size": "many"}, "invalid int"),
        ({"batch_mode": "huge"}, "invalid choice"),
        ({"task_name": "--fresh"}, "may not start"),
    ):
        r = client.post("/api/runs", json={"dataset": "so100_v30_video", "name": "r1", "flags": flags})
        assert r.status_code == 422 and message in r.json()["detail"], (flags, r.text)
    assert not (roots[1] / "r1").exists()
    r = client.post("/api/runs", json={"dataset": "../x", "name": "r1"})
    assert r.status_code == 403
    r = client.post("/api/runs", json={"dataset": "so100_v30_video", "name": "a/b"})
    assert r.status_code == 422 and "run name" in r.json()["detail"]


def test_run_lifecycle_with_a_stand_in_cli(client: TestClient, roots, tmp_path: Path, monkeypatch) -> None:
    data, out = roots
    fake = tmp_path / "fake_cli.py"
    fake.write_text(FAKE_CLI)
    real_build = manager_runs.build_argv

    def build(dataset, output, flags):
        argv = real_build(dataset, output, flags)
        assert argv[0] == sys.executable and argv[1].endswith("train_lerobot_to_act.py")
        return [sys.executable, str(fake), *argv[2:]]

    monkeypatch.setattr(manager_runs, "build_argv", build)
    r = client.post(
        "/api/runs",
        json={
            "dataset": "so100_v30_video",
            "name": "run1",
            "flags": {"num_epochs": "12", "batch_size": 64, "gpus": "cpu"},
        },
    )
    assert r.status_code == 201, r.text
    argv = r.json()["argv"]
    assert argv[argv.index("--input_dir") + 1] == str(data / "so100_v30_video")
    assert argv[argv.index("--output_dir") + 1] == str(out / "run1")
    assert "--batch_size" not in argv  # the default is left to the CLI
    assert argv[argv.index("--num_epochs") + 1] == "12"
    r = client.post("/api/runs", json={"dataset": "so100_v30_video", "name": "run1"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]

    _wait(lambda: client.get("/api/run/metrics", params={"id": "run1"}).json()["total"] >= 2)
    m = client.get("/api/run/metrics", params={"id": "run1"}).json()
    assert m["summary"]["status"] == "running" and m["summary"]["steps_planned"] == 12
    assert 0 < m["summary"]["progress"] < 1 and m["rows"][0]["kind"] == "train"
    assert client.get("/api/run/metrics", params={"id": "run1", "after": 1}).json()["rows"][0]["step"] == 2
    listed = client.get("/api/runs").json()["runs"]
    assert [r["id"] for r in listed] == ["run1"] and listed[0]["alive"]
    cards = {c["path"]: c for c in client.get("/api/datasets").json()["datasets"]}
    assert cards["so100_v30_video"]["used_by"] == ["run1"]

    r = client.post("/api/run/resume", params={"id": "run1"})
    assert r.status_code == 409 and "still running" in r.json()["detail"]
    assert client.post("/api/run/stop", params={"id": "run1"}).status_code == 200
    summary = _wait(
        lambda: (
            (s := client.get("/api/run", params={"id": "run1"}).json())["status"] == "interrupted"
            and not s["alive"]
            and s
        )
    )
    assert summary["returncode"] == 143 and summary["steps_completed"] < 12
    r = client.post("/api/run/stop", params={"id": "run1"})
    assert r.status_code == 409 and "not running" in r.json()["detail"]
    log_text = client.get("/api/run/log", params={"id": "run1"}).json()["text"]
    assert "SIGTERM: saved" in log_text

    assert client.post("/api/run/resume", params={"id": "run1"}).status_code == 200
    done = _wait(
        lambda: (s := client.get("/api/run", params={"id": "run1"}).json())["status"] == "completed" and s
    )
    assert done["steps_completed"] == 12 and done["progress"] == 1.0
    log = client.get("/api/run/log", params={"id": "run1"}).json()
    assert log["text"].count("starting:") == 2 and "done" in log["text"]
    assert client.get("/api/run/log", params={"id": "run1", "offset": log["offset"]}).json()["text"] == ""

    r = client.get("/api/run/download", params={"id": "run1"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "fake_run/policy_best.ckpt" in names and "fake_run/manifest.json" in names

    for url in ("/runs", "/run?id=run1", "/runs/new?dataset=so100_v30_video"):
        page = client.get(url)
        assert page.status_code == 200 and "run1" in page.text or "so100_v30_video" in page.text


def test_run_not_found(client: TestClient) -> None:
    r = client.get("/api/run", params={"id": "nothing"})
    assert r.status_code == 404
    r = client.post("/api/run/resume", params={"id": "nothing"})
    assert r.status_code == 404


# ----------------------------------------------------------------------------------- pages, log, token


def test_pages_render(client: TestClient) -> None:
    assert "so100_v30_video" in client.get("/").text
    page = client.get("/dataset", params={"path": "so100_v21_video"}).text
    assert 'data-episode="4"' in page and "Delete selected episodes" in page
    page = client.get("/episode", params={"path": "so100_v21_video", "episode": 2}).text
    assert 'data-camera="front"' in page and 'data-camera="wrist"' in page
    assert client.get("/episode", params={"path": "so100_v21_video", "episode": 7}).status_code == 404
    assert client.get("/static/episode.js").status_code == 200
    assert 'id="logpanel"' in page


def test_server_log_panel_feed(client: TestClient) -> None:
    import logging

    logging.getLogger("manager.test").info("hello from the test")
    lines = client.get("/api/log").json()["lines"]
    assert any("hello from the test" in line["line"] for line in lines)
    last = lines[-1]["seq"]
    newer = client.get("/api/log", params={"after": last}).json()["lines"]
    assert all(line["seq"] > last and "hello from the test" not in line["line"] for line in newer)


def test_token_is_required_when_set(roots) -> None:
    data, out = roots
    with TestClient(create_app(data, out, token="s3cret"), follow_redirects=False) as c:
        r = c.get("/api/datasets")
        assert r.status_code == 401 and "token" in r.json()["detail"]
        assert c.get("/", params={"token": "wrong"}).status_code == 401
        r = c.get("/dataset", params={"path": "so100_v30_video", "token": "s3cret"})
        assert r.status_code == 303 and r.headers["location"] == "/dataset?path=so100_v30_video"
        assert "train_act_manager_token" in r.headers["set-cookie"]
        assert c.get("/api/datasets").status_code == 200  # the cookie now
    with TestClient(create_app(data, out, token="s3cret")) as c:
        assert c.get("/api/datasets", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_token_generated_for_any_non_local_host() -> None:
    assert resolve_token("127.0.0.1", None) is None and resolve_token("localhost", None) is None
    token = resolve_token("0.0.0.0", None)
    assert token and len(token) >= 24 and resolve_token("0.0.0.0", None) != token
    assert resolve_token("0.0.0.0", "mine") == "mine"


def test_entrypoint_manager_starts_the_app_on_all_interfaces_with_a_token(tmp_path: Path) -> None:
    """`docker run ... train_act:cuda manager` = entrypoint.sh manager: 0.0.0.0, a token, the two folders."""
    import subprocess

    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "train-act-manager").write_text('#!/bin/sh\necho "$@"\n')
    (fake / "train-act-manager").chmod(0o755)
    env = dict(
        os.environ, ACT_INPUT_DIR=str(data), ACT_OUTPUT_DIR=str(out), PATH=f"{fake}:{os.environ['PATH']}"
    )
    entry = Path(__file__).resolve().parents[1] / "entrypoint.sh"
    res = subprocess.run(
        ["bash", str(entry), "manager", "--port", "9000"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "--data_root",
        str(data),
        "--runs_root",
        str(out),
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--port",
        "9000",
    ]
    res = subprocess.run(
        ["bash", str(entry), "manager"],
        env={**env, "ACT_INPUT_DIR": str(tmp_path / "nope")},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "no data folder" in res.stderr
