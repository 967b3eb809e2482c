"""--episodes / --exclude_episodes (issue 17): exactly the chosen source episodes are converted,
for LeRobot and Innate inputs, through both CLIs; bad specs and unknown indices are refused
before anything is written."""

from __future__ import annotations

import json

import pytest
from test_innate_import import write_skill
from test_run_faults import manifest, tiny_run

import train_lerobot_to_act as cli
from lerobot_bridge.__main__ import main as bridge_main
from lerobot_bridge.innate import convert_innate
from lerobot_bridge.selection import parse_episode_spec


def test_specs_parse_lists_and_ranges():
    assert parse_episode_spec("0-3,7, 9 - 10,3") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_episode_spec([4, 1, 4]) == [1, 4]
    assert parse_episode_spec(None) is None
    for bad, message in [("3-1", "runs backwards"), ("a", "'a' is not an index"), (",", "names no episode"),
                         ("-2", "'-2' is not an index")]:
        with pytest.raises(ValueError, match=message):
            parse_episode_spec(bad)


def test_training_cli_converts_exactly_the_chosen_lerobot_episodes(tmp_path, fixtures_dir):
    out = tmp_path / "out"
    args = [*tiny_run(fixtures_dir / "so100_v30_video", out), "--episodes", "0,2-4",
            "--exclude_episodes", "3", "--prepare_only"]
    assert cli.main(args) == 0
    m = manifest(out)
    assert [e["source_index"] for e in m["conversion"]["episodes"]] == [0, 2, 4]
    assert m["arguments"]["episodes"] == [0, 2, 3, 4] and m["arguments"]["exclude_episodes"] == [3]
    assert m["status"] == "prepared"


def test_unknown_episode_index_is_refused_before_writing(tmp_path, fixtures_dir, capsys):
    out = tmp_path / "out"
    rc = cli.main([*tiny_run(fixtures_dir / "so100_v30_video", out), "--episodes", "1,7-8"])
    err = capsys.readouterr().err
    assert rc == 2 and "--episodes names episode(s) [7, 8] that it does not have" in err
    assert "indices 0..4" in err and not out.exists()
    rc = cli.main([*tiny_run(fixtures_dir / "so100_v30_video", out), "--episodes", "2-1"])
    assert rc == 2 and "runs backwards" in capsys.readouterr().err and not out.exists()


def test_bridge_cli_and_innate_importer_select_too(tmp_path, fixtures_dir):
    out = tmp_path / "lerobot"
    assert bridge_main([str(fixtures_dir / "so100_v21_video"), str(out), "--exclude_episodes", "0-2",
                        "--convert_workers", "1"]) == 0
    result = json.loads((out / "conversion.json").read_text())
    assert [e["source_index"] for e in result["episodes"]] == [3, 4]

    write_skill(tmp_path / "skill", "observations", [5, 6, 7, 8])
    innate = convert_innate(tmp_path / "skill", tmp_path / "innate", episodes=[1, 3])
    assert [e.source_index for e in innate.episodes] == [1, 3]
    assert [e.frames_in for e in innate.episodes] == [6, 8]
    out2 = tmp_path / "skill_out"
    assert bridge_main([str(tmp_path / "skill"), str(out2), "--episodes", "0,2"]) == 0
    converted = json.loads((out2 / "conversion.json").read_text())["episodes"]
    assert [e["source_index"] for e in converted] == [0, 2]
