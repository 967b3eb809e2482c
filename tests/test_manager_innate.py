"""Training Manager on Innate skills: episode view, flags, curation into new skills, export from a run.

Skills are written the way Innate's recorder writes them (tests/test_innate_import.py `write_skill`:
float64 qpos/action with the progress/termination columns, BGR uint8 frames), so the values the
manager serves can be compared exactly with the source: frames with the RGB-swapped source frames,
plots with the source rows, new skills through the bridge's `convert_innate`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_innate_import import recorder_action, write_skill
from test_manager_api import decode_png, tree_digest

from lerobot_bridge.innate import convert_innate
from manager.app import create_app

LENGTHS = [23, 17, 30]


@pytest.fixture()
def innate_roots(tmp_path: Path):
    data, out = tmp_path / "data", tmp_path / "runs"
    src = write_skill(data / "skills" / "pick_sock", "observations", LENGTHS, seed=1)
    return data, out, src


@pytest.fixture()
def client(innate_roots) -> TestClient:
    data, out, _ = innate_roots
    with TestClient(create_app(data, out)) as c:
        yield c


def converted(skill: Path, out: Path) -> list[dict]:
    res = convert_innate(skill, out, idle_threshold=0, progress=False)
    episodes = []
    for report, path in zip(res.episodes, res.hdf5_paths, strict=True):
        with h5py.File(path, "r") as f:
            episodes.append(
                {
                    "source_index": report.source_index,
                    "qpos": f["observations/qpos"][:],
                    "action": f["action"][:],
                    "images": {k: f["observations/images"][k][:] for k in f["observations/images"]},
                }
            )
    return episodes


# ------------------------------------------------------------------------------------------- view


def test_skill_card_and_episode_list(client: TestClient) -> None:
    body = client.get("/api/dataset", params={"path": "skills/pick_sock"}).json()
    card = body["card"]
    assert card["kind"] == "innate" and card["error"] is None
    assert (card["episodes"], card["frames"], card["fps"]) == (3, sum(LENGTHS), 30.0)
    assert [c["name"] for c in card["cameras"]] == ["camera_1", "camera_2"]
    assert (card["state_dim"], card["action_dim"]) == (6, 10)
    assert [e["index"] for e in body["episodes"]] == [0, 1, 2]
    assert [e["length"] for e in body["episodes"]] == LENGTHS
    page = client.get("/dataset", params={"path": "skills/pick_sock"}).text
    assert 'data-episode="2"' in page and 'id="metadata-form"' in page and 'id="task-form"' not in page


def test_episode_frames_are_the_rgb_source_frames_and_plots_the_source_rows(client, innate_roots) -> None:
    _, _, src = innate_roots
    for episode, t in ((0, 0), (0, 11), (2, 29), (1, 16)):
        for camera, key in (("camera_1", "a"), ("camera_2", "b")):
            r = client.get(
                "/api/dataset/frame",
                params={"path": "skills/pick_sock", "episode": episode, "camera": camera, "t": t},
            )
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            expected = src[episode]["frames"][key][t][..., ::-1]  # recorder BGR -> the RGB training sees
            assert np.array_equal(decode_png(r.content), expected), (episode, camera, t)
    body = client.get("/api/dataset/episode", params={"path": "skills/pick_sock", "episode": 2}).json()
    assert np.array_equal(np.array(body["state"]), src[2]["qpos"])
    assert np.array_equal(np.array(body["action"]), src[2]["action"])
    assert body["cameras"] == ["camera_1", "camera_2"] and body["fps"] == 30.0
    assert body["action_names"][-2:] == ["progress", "termination"]
    page = client.get("/episode", params={"path": "skills/pick_sock", "episode": 1}).text
    assert (
        'data-camera="camera_1"' in page and 'data-camera="camera_2"' in page and 'data-length="17"' in page
    )
    r = client.get(
        "/api/dataset/frame", params={"path": "skills/pick_sock", "episode": 0, "camera": "camera_1", "t": 23}
    )
    assert r.status_code == 404 and "out of range" in r.json()["detail"]
    r = client.get("/api/dataset/episode", params={"path": "skills/pick_sock", "episode": 7})
    assert r.status_code == 404
    assert client.get("/episode", params={"path": "skills/pick_sock", "episode": 7}).status_code == 404


def test_plain_act_hdf5_folder_frames_are_unswapped(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    folder = tmp_path / "data" / "act"
    folder.mkdir(parents=True)
    top = rng.integers(0, 256, size=(9, 12, 16, 3), dtype=np.uint8)
    with h5py.File(folder / "episode_0.hdf5", "w") as f:
        f["observations/qpos"] = rng.normal(size=(9, 14)).astype(np.float32)
        f["action"] = rng.normal(size=(9, 14)).astype(np.float32)
        f["observations/images/top"] = top
    with TestClient(create_app(tmp_path / "data", tmp_path / "runs")) as c:
        r = c.get("/api/dataset/frame", params={"path": "act", "episode": 0, "camera": "top", "t": 5})
        assert r.status_code == 200 and np.array_equal(decode_png(r.content), top[5])  # RGB as stored
        assert c.get("/api/dataset/flags", params={"path": "act"}).json()["flags"][0]["error"] is None


def _write_episode(path: Path, qpos: np.ndarray, action: np.ndarray, t: int) -> None:
    rng = np.random.default_rng(9)
    with h5py.File(path, "w") as f:
        f["observations/qpos"] = qpos
        f["observations/images/camera_1"] = rng.integers(0, 256, size=(t, 12, 16, 3), dtype=np.uint8)
        f["observations/images/camera_2"] = rng.integers(0, 256, size=(t, 12, 16, 3), dtype=np.uint8)
        f["action"] = action


def test_flags_idle_start_and_nan(innate_roots, tmp_path: Path) -> None:
    data, out, _ = innate_roots
    skill = data / "skills" / "pick_sock"
    rng = np.random.default_rng(3)
    t = 40
    commands = rng.normal(size=(t, 8))
    commands[:6] = commands[0]  # the operator had not started: the first 6 commands are equal
    _write_episode(skill / "data" / "episode_3.h5", rng.normal(size=(t, 6)), recorder_action(commands), t)
    qpos = rng.normal(size=(12, 6))
    qpos[4, 2] = np.nan
    _write_episode(skill / "data" / "episode_4.h5", qpos, recorder_action(rng.normal(size=(12, 8))), 12)
    with TestClient(create_app(data, out)) as c:
        flags = {
            f["index"]: f
            for f in c.get("/api/dataset/flags", params={"path": "skills/pick_sock"}).json()["flags"]
        }
        assert sorted(flags) == [0, 1, 2, 3, 4]
        # what convert_innate --idle_threshold 1e-4 trims: the 6 equal commands (the ramp column ignored)
        assert (flags[3]["idle_start"], flags[3]["idle_end"]) == (6, 0)
        assert flags[3]["frozen_actions"] is False and flags[3]["nan"] is False and flags[3]["error"] is None
        assert flags[3]["short"] is True and flags[3]["length"] == 40
        assert (flags[0]["idle_start"], flags[0]["idle_end"], flags[0]["short"]) == (0, 0, True)
        # and what the importer itself trims from that episode at the CLI's default threshold
        report = convert_innate(skill, tmp_path / "trim", episodes=[3], progress=False).episodes[0]
        assert (report.idle_trimmed_start, report.idle_trimmed_end) == (6, 0)
        assert flags[4]["nan"] is True and "row 4 column 2" in flags[4]["error"]
        flags = c.get("/api/dataset/flags", params={"path": "skills/pick_sock", "chunk_size": 20}).json()[
            "flags"
        ]
        assert [f["short"] for f in flags if f["error"] is None] == [False, True, False, False]
        card = c.get("/api/dataset", params={"path": "skills/pick_sock"}).json()["card"]
        assert card["episodes"] == 4 and any("episode 4" in n for n in card["notes"])
        body = c.get("/api/dataset/episode", params={"path": "skills/pick_sock", "episode": 4}).json()
        assert body["flags"]["nan"] is True and "state" not in body


# ------------------------------------------------------------------------------------------- curation


def test_delete_writes_a_new_skill_the_bridge_reads_back(client, innate_roots, tmp_path) -> None:
    data, _, src = innate_roots
    skill = data / "skills" / "pick_sock"
    before = tree_digest(skill)
    r = client.post(
        "/api/dataset/delete_episodes",
        json={"path": "skills/pick_sock", "episodes": [1], "target": "skills/pick_sock_clean"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "skills/pick_sock_clean" and r.json()["deleted"] == [1]
    assert tree_digest(skill) == before  # the source is never touched
    new = data / "skills" / "pick_sock_clean"
    assert sorted(p.name for p in (new / "data").glob("episode_*")) == ["episode_0.h5", "episode_1.h5"]
    meta = json.loads((new / "data" / "dataset_metadata.json").read_text())
    assert meta["number_of_episodes"] == 2 and meta["data_frequency"] == 30
    assert [(e["episode_id"], e["file_name"]) for e in meta["episodes"]] == [
        (0, "episode_0.h5"),
        (1, "episode_1.h5"),
    ]
    assert json.loads((new / "metadata.json").read_text())["name"] == "pick_sock_clean"
    got = converted(new, tmp_path / "new_conv")
    want = converted(skill, tmp_path / "src_conv")
    assert [e["source_index"] for e in got] == [0, 1]
    for new_i, old_i in enumerate((0, 2)):
        assert np.array_equal(got[new_i]["qpos"], want[old_i]["qpos"])
        assert np.array_equal(got[new_i]["action"], want[old_i]["action"])
        assert np.array_equal(got[new_i]["action"], src[old_i]["action"].astype(np.float32))
        for cam in ("camera_1", "camera_2"):
            assert np.array_equal(got[new_i]["images"][cam], want[old_i]["images"][cam])
    # it is listed as a skill; the same target again is refused and nothing is overwritten
    cards = {d["path"]: d for d in client.get("/api/datasets").json()["datasets"]}
    assert cards["skills/pick_sock_clean"]["kind"] == "innate"
    digest = tree_digest(new)
    r = client.post(
        "/api/dataset/delete_episodes",
        json={"path": "skills/pick_sock", "episodes": [0], "target": "skills/pick_sock_clean"},
    )
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert tree_digest(new) == digest
    for episodes, message in (([], "no episodes selected"), ([5], "not found"), ([0, 1, 2], "empty")):
        r = client.post(
            "/api/dataset/delete_episodes",
            json={"path": "skills/pick_sock", "episodes": episodes, "target": "x"},
        )
        assert r.status_code == 422 and message in r.json()["detail"], (episodes, r.text)


def test_merge_compatible_skills_in_order(client, innate_roots, tmp_path) -> None:
    data, _, src = innate_roots
    other = write_skill(data / "skills" / "pick_sock_2", "observations", [14, 19], seed=7)
    r = client.post(
        "/api/merge",
        json={
            "sources": [{"path": "skills/pick_sock", "episodes": [2, 0]}, {"path": "skills/pick_sock_2"}],
            "target": "skills/merged",
        },
    )
    assert r.status_code == 201, r.text
    assert [p["episode"] for p in r.json()["provenance"]] == [2, 0, 0, 1]
    got = converted(data / "skills" / "merged", tmp_path / "conv")
    expected = [src[2], src[0], other[0], other[1]]
    assert len(got) == 4
    for g, s in zip(got, expected, strict=True):
        assert np.array_equal(g["qpos"], s["qpos"].astype(np.float32))
        assert np.array_equal(g["images"]["camera_1"], s["frames"]["a"][..., ::-1])


def test_merge_mismatch_is_refused_naming_every_difference(client, innate_roots) -> None:
    data, _, _ = innate_roots
    odd = data / "skills" / "odd"
    (odd / "data").mkdir(parents=True)
    (odd / "metadata.json").write_text(json.dumps({"name": "odd", "type": "learned", "guidelines": ""}))
    rng = np.random.default_rng(0)
    with h5py.File(odd / "data" / "episode_0.h5", "w") as f:
        f["observations/qpos"] = rng.normal(size=(10, 7))
        f["observations/images/camera_1"] = np.zeros((10, 24, 32, 3), np.uint8)
        f["action"] = recorder_action(rng.normal(size=(10, 8)))
    r = client.post(
        "/api/merge", json={"sources": [{"path": "skills/pick_sock"}, {"path": "skills/odd"}], "target": "m"}
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "not compatible" in detail
    assert "cameras ['camera_1'] vs ['camera_1', 'camera_2']" in detail
    assert "camera 'camera_1' frame size 24x32 vs 12x16" in detail
    assert "state (qpos) size 7 vs 6" in detail
    assert not (data / "m").exists()
    r = client.post("/api/merge", json={"sources": [{"path": "skills/pick_sock"}], "target": "m"})
    assert r.status_code == 422 and "at least two" in r.json()["detail"]


def test_metadata_edit_writes_a_new_skill(client, innate_roots) -> None:
    data, _, _ = innate_roots
    skill = data / "skills" / "pick_sock"
    before = tree_digest(skill)
    r = client.post(
        "/api/skill/metadata",
        json={
            "path": "skills/pick_sock",
            "target": "skills/pick_sock_v2",
            "name": "Pick up the sock",
            "guidelines": "Grasp the sock by its cuff.",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["changed"]["name"] == ["pick_sock", "Pick up the sock"]
    assert tree_digest(skill) == before
    new = data / "skills" / "pick_sock_v2"
    meta = json.loads((new / "metadata.json").read_text())
    assert (meta["name"], meta["guidelines"], meta["type"]) == (
        "Pick up the sock",
        "Grasp the sock by its cuff.",
        "learned",
    )
    for name in ("episode_0.h5", "episode_1.h5", "episode_2.h5", "dataset_metadata.json"):
        a, b = (skill / "data" / name).read_bytes(), (new / "data" / name).read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    # execution fields are checked with the runtime's rules before anything is written
    (new / "run1").mkdir()
    (new / "run1" / "act_policy_step_5.pth").write_bytes(b"x")
    r = client.post(
        "/api/skill/metadata",
        json={
            "path": "skills/pick_sock_v2",
            "target": "skills/pick_sock_v3",
            "execution": {"checkpoint": "run1/act_policy_step_5.pth", "action_dim": 10, "duration": -2},
        },
    )
    assert r.status_code == 422 and "duration must be > 0" in r.json()["detail"]
    assert not (data / "skills" / "pick_sock_v3").exists()
    r = client.post(
        "/api/skill/metadata",
        json={
            "path": "skills/pick_sock_v2",
            "target": "skills/pick_sock_v3",
            "execution": {"checkpoint": "run1/act_policy_step_5.pth", "action_dim": 10, "duration": 4.5},
        },
    )
    assert r.status_code == 201, r.text
    ex = json.loads((data / "skills" / "pick_sock_v3" / "metadata.json").read_text())["execution"]
    assert ex == {"checkpoint": "run1/act_policy_step_5.pth", "action_dim": 10, "duration": 4.5}
    assert (data / "skills" / "pick_sock_v3" / "run1" / "act_policy_step_5.pth").is_file()
    for body, status, message in (
        ({"target": "skills/x"}, 422, "nothing to change"),
        ({"target": "skills/pick_sock_v2", "name": "n"}, 409, "already exists"),
        ({"target": "../x", "name": "n"}, 403, "'..' is refused"),
        ({"target": "skills/y", "execution": {"bogus": 1}}, 422, "unknown fields"),
    ):
        r = client.post("/api/skill/metadata", json={"path": "skills/pick_sock", **body})
        assert r.status_code == status and message in r.json()["detail"], (body, r.text)


# ------------------------------------------------------------------------------------------- export


def test_export_a_completed_run_into_a_skill(innate_roots) -> None:
    import train_lerobot_to_act

    data, out, _ = innate_roots
    skill = data / "skills" / "pick_sock"
    rc = train_lerobot_to_act.main(
        [
            "--input_dir", str(skill), "--output_dir", str(out / "tiny"),
            "--hidden_dim", "64", "--dim_feedforward", "128", "--enc_layers", "1", "--dec_layers", "2",
            "--nheads", "2", "--backbone_weights", "none", "--gpus", "cpu", "--num_epochs", "1",
            "--batch_size", "4", "--chunk_size", "10", "--storage", "raw",
        ]
    )  # fmt: skip
    assert rc == 0
    with TestClient(create_app(data, out)) as c:
        page = c.get("/run", params={"id": "tiny"}).text
        assert 'id="export-form"' in page and 'value="skills/pick_sock"' in page
        # the tiny model is not what the robot runs: the exporter refuses it, the error is shown
        r = c.post("/api/run/export_innate", json={"id": "tiny", "skill": "skills/pick_sock"})
        assert r.status_code == 422 and "hidden_dim is 64, the runtime builds 512" in r.json()["detail"]
        assert not any(p.name.startswith("metadata.json.bak") for p in skill.iterdir())
        for body, status, message in (
            ({"skill": "../elsewhere"}, 403, "'..' is refused"),
            ({"skill": "/tmp/x"}, 403, "absolute"),
            ({"skill": "skills/pick_sock", "checkpoint": "../x.ckpt"}, 422, "not in the run"),
            ({"skill": "skills"}, 422, "not an Innate skill"),
        ):
            r = c.post("/api/run/export_innate", json={"id": "tiny", **body})
            assert r.status_code == status and message in r.json()["detail"], (body, r.text)
        r = c.post(
            "/api/run/export_innate",
            json={"id": "tiny", "skill": "skills/pick_sock", "skip_runtime_check": True},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        run_id = body["result"]["run_id"]
        step = body["result"]["step"]
        assert body["files"][:3] == [
            f"skills/pick_sock/{run_id}/act_policy_step_{step}.pth",
            f"skills/pick_sock/{run_id}/dataset_stats.pt",
            "skills/pick_sock/metadata.json",
        ]
        for rel in body["files"]:
            assert (data / rel).is_file(), rel
        meta = json.loads((skill / "metadata.json").read_text())
        assert meta["execution"]["checkpoint"] == f"{run_id}/act_policy_step_{step}.pth"
        assert meta["execution"]["stats_file"] == f"{run_id}/dataset_stats.pt"
        assert meta["execution"]["action_dim"] == 10
        assert any("224x224" in w for w in body["warnings"])  # trained on 12x16 frames
        exports = c.get("/api/run", params={"id": "tiny"}).json()["exports"]
        assert [x["returncode"] for x in exports] == [2, 0]
        # a run that is not completed is refused
        manifest = json.loads((out / "tiny" / "manifest.json").read_text())
        manifest["status"] = "interrupted"
        (out / "tiny" / "manifest.json").write_text(json.dumps(manifest))
        r = c.post("/api/run/export_innate", json={"id": "tiny", "skill": "skills/pick_sock"})
        assert r.status_code == 409 and "only a completed run" in r.json()["detail"]
