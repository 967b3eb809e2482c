"""The packages' public faces (issue 13): what README and ARCHITECTURE.md promise imports, every
name in __all__ resolves, and the CLI uses the bridge through it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import act
import lerobot_bridge

REPO = Path(__file__).resolve().parents[1]


def test_act_exports_the_model_the_config_and_the_runner():
    from act import ACTConfig, ACTPolicy, ACTRunner
    from act.act_policy import ACTPolicy as policy_class
    from act.config import ACTConfig as config_class
    from act.policy import ACTRunner as runner_class

    assert (ACTConfig, ACTPolicy, ACTRunner) == (config_class, policy_class, runner_class)
    for name in act.__all__:
        assert getattr(act, name) is not None, name


def test_bridge_exports_its_entry_points():
    from lerobot_bridge import DatasetError, convert_dataset, convert_innate, detect_input_kind
    from lerobot_bridge.convert import convert_dataset as convert_impl

    assert convert_dataset is convert_impl and callable(convert_innate) and callable(detect_input_kind)
    assert DatasetError.exit_code == 2
    for name in lerobot_bridge.__all__:
        assert getattr(lerobot_bridge, name) is not None, name


def test_importing_the_error_module_does_not_load_the_converters():
    """Worker processes and light tools import lerobot_bridge.errors; the names resolve lazily."""
    code = ("import sys, lerobot_bridge.errors; "
            "print(int('lerobot_bridge.convert' in sys.modules), int('av' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]


def test_the_cli_imports_the_bridge_through_its_public_face():
    tree = ast.parse((REPO / "train_lerobot_to_act.py").read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "lerobot_bridge" in modules and "lerobot_bridge.errors" not in modules


def test_architecture_names_files_that_exist():
    text = (REPO / "ARCHITECTURE.md").read_text()
    data_path = [line for line in text.splitlines() if line[:2] in {f"{i}." for i in range(1, 10)}]
    assert 1 <= len(data_path) <= 6
    for line in data_path:
        path = line.split("`")[1]
        assert (REPO / path).is_file(), path


@pytest.mark.parametrize(("fields", "message"), [
    ({"hidden_dim": 30, "nheads": 4}, "hidden_dim 30 must be divisible by nheads 4"),
    ({"hidden_dim": 63, "nheads": 1}, "must be even"),
    ({"chunk_size": 0}, "chunk_size must be an integer >= 1 (got 0)"),
    ({"dropout": 1.0}, "dropout must be in [0, 1) (got 1.0)"),
    ({"kl_weight": -1.0}, "kl_weight must be >= 0"),
    ({"camera_names": ["a", "a"]}, "camera names must be unique"),
    ({"image_size": [0, 4]}, "image_size must be [H, W]"),
])
def test_config_validates_itself(fields, message):
    """ACTConfig refuses what no model can be built from, however it is made (issue 13)."""
    from act import ACTConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        ACTConfig(**fields)
    with pytest.raises(ValueError):
        ACTConfig.check("--", **fields)


def test_config_check_words_the_problem_with_the_cli_flags():
    from act import ACTConfig

    with pytest.raises(ValueError, match=re.escape("--hidden_dim 30 must be divisible by --nheads 4")):
        ACTConfig.check("--", hidden_dim=30, nheads=4)
    ACTConfig.check("--", hidden_dim=64, nheads=2)  # fine: returns
    with pytest.raises(ValueError, match="hidden_dim 30 must be divisible"):  # a saved config too
        ACTConfig.from_dict({**ACTConfig().to_dict(), "hidden_dim": 30, "nheads": 4})
