"""Record expert episodes of the reaching task as a LeRobot v3.0 dataset (video cameras)."""

from __future__ import annotations

from pathlib import Path

from lerobot_bridge.writer import write_lerobot_v30

from .env import ReachConfig
from .expert import record_expert_episode

FPS = 10
STATE_NAMES = ["x", "y"]


def record_dataset(
    root: str | Path,
    num_episodes: int,
    first_seed: int = 0,
    cfg: ReachConfig | None = None,
    codec: str = "h264",
    overwrite: bool = False,
) -> dict:
    """Write episodes with seeds first_seed .. first_seed + num_episodes - 1 to `root`.

    Returns a summary: seeds, frame count, expert success rate (should be 1.0).
    """
    episodes, successes = [], 0
    for seed in range(first_seed, first_seed + num_episodes):
        episode, success = record_expert_episode(seed, cfg)
        episodes.append(episode)
        successes += success
    write_lerobot_v30(
        root,
        episodes,
        fps=FPS,
        robot_type="demo_reach_2d",
        codec=codec,
        state_names=STATE_NAMES,
        action_names=STATE_NAMES,
        # Near-lossless: the goal is a few pixels wide and the policy reads its position.
        crf=18,
        overwrite=overwrite,
    )
    return {
        "root": str(root),
        "seeds": [first_seed, first_seed + num_episodes],
        "episodes": num_episodes,
        "frames": sum(len(e.state) for e in episodes),
        "expert_success_rate": successes / num_episodes,
    }
