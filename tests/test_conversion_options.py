"""One conversion contract (issue 13): both CLIs take their conversion flags from
lerobot_bridge.options, and the options object checks itself and says what each converter takes."""

from __future__ import annotations

import argparse

import pytest

import train_lerobot_to_act as cli
from lerobot_bridge.__main__ import build_parser as bridge_parser
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.options import ConversionOptions, add_conversion_flags, parse_size, split_list


def conversion_actions(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    probe = argparse.ArgumentParser()
    add_conversion_flags(probe)
    names = {a.dest for a in probe._actions if a.dest != "help"}
    return {a.dest: (a.option_strings, a.default, a.choices, a.nargs, a.type) for a in parser._actions
            if a.dest in names}


def test_both_clis_have_every_conversion_flag_with_the_same_meaning():
    train, bridge = conversion_actions(cli.build_parser()), conversion_actions(bridge_parser())
    assert set(train) == set(bridge) == {
        "camera_keys", "camera_names", "episode_len", "idle_threshold", "max_episodes", "episodes",
        "exclude_episodes", "convert_workers", "color_order", "storage", "jpeg_quality", "image_size"}
    for name in train:
        if name == "storage":  # training defaults to JPEG, the bridge to upstream ACT's raw layout
            assert (train[name][1], bridge[name][1]) == ("jpeg", "raw")
            assert train[name][2] == bridge[name][2] == ("raw", "jpeg")
        else:
            assert train[name] == bridge[name], name


def test_options_from_flags_and_what_each_converter_takes():
    args = bridge_parser().parse_args(["in", "out", "--camera_keys", "a,b", "c", "--episodes", "0-2,5",
                                       "--image_size", "24X32", "--storage", "jpeg", "--jpeg_quality", "60"])
    options = ConversionOptions.from_args(args)
    assert options.camera_keys == ["a", "b", "c"] and options.episodes == [0, 1, 2, 5]
    assert options.image_size == (24, 32)
    lerobot = options.converter_kwargs("lerobot")
    assert (lerobot["storage"], lerobot["jpeg_quality"], lerobot["image_size"]) == ("jpeg", 60, (24, 32))
    assert "color_order" not in lerobot
    assert options.converter_kwargs("innate")["color_order"] == "auto"
    # Options at their defaults stay out: an earlier conversion's fingerprint is unchanged.
    plain = ConversionOptions().converter_kwargs("lerobot")
    assert set(plain) == {"episode_len", "idle_threshold", "max_episodes", "camera_keys", "camera_names"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"storage": "png"}, "--storage must be one of raw, jpeg"),
    ({"jpeg_quality": 0}, "--jpeg_quality must be in 1..100"),
    ({"color_order": "yuv"}, "--color_order must be one of"),
    ({"idle_threshold": -1.0}, "--idle_threshold must be >= 0"),
])
def test_options_refuse_what_no_converter_takes(fields, message):
    with pytest.raises(DatasetError, match=message):
        ConversionOptions(**fields)


def test_color_order_on_a_lerobot_input_is_refused_and_sizes_parse():
    with pytest.raises(DatasetError, match="applies to Innate / ACT HDF5 inputs only"):
        ConversionOptions(color_order="bgr").converter_kwargs("lerobot")
    assert parse_size(" 240 x 320 ") == (240, 320) and parse_size(None) is None
    with pytest.raises(DatasetError, match="--image_size 0x5: expected HxW"):
        parse_size("0x5")
    assert split_list(["a, b", "c"]) == ["a", "b", "c"] and split_list([]) is None
