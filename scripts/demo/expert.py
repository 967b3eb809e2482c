"""The scripted expert: waits, moves straight to the goal at a constant speed, waits again.

It reads the goal from the environment (privileged), which a learned policy can only see
in the images. The idle frames at both ends (action == state, unchanged from frame to frame)
are what real teleoperated recordings look like; the bridge's idle trimming removes them.
Speed and idle lengths vary per episode, so episode lengths vary.
"""

from __future__ import annotations

import numpy as np

from lerobot_bridge.writer import EpisodeData

from .env import CAMERAS, ReachConfig, ReachEnv

TASK = "Move the point onto the target shown by the cameras."


ARRIVED = 0.01  # closer than this, the expert commands the goal itself (and then holds it)


def expert_action(env: ReachEnv, speed: float) -> np.ndarray:
    """Next commanded position (2,) on the straight line to the goal.

    Constant `speed`, slowing down near the goal (half the remaining distance per step), as a
    teleoperator settles onto a target. The slow approach matters for the recording: the
    final "go to the goal" command equals the hold that follows, so idle trimming removes it
    with the hold; the last kept command is then within ARRIVED of the goal.
    """
    to_goal = env.goal - env.pos
    dist = float(np.linalg.norm(to_goal))
    if dist <= ARRIVED:
        return env.goal.copy()
    step = min(speed, 0.5 * dist)
    return (env.pos + to_goal * (step / dist)).astype(np.float32)


def record_expert_episode(seed: int, cfg: ReachConfig | None = None) -> tuple[EpisodeData, bool]:
    """Run the expert on episode `seed`; return the recording and whether it succeeded."""
    env = ReachEnv(seed, cfg)
    idle_start = int(env.rng.integers(3, 9))
    idle_end = int(env.rng.integers(4, 11))
    speed = float(env.rng.uniform(0.04, 0.07))
    states, actions = [], []
    images: dict[str, list[np.ndarray]] = {cam: [] for cam in CAMERAS}

    def record(obs: dict, action: np.ndarray) -> None:
        states.append(obs["state"])
        actions.append(action)
        for cam in CAMERAS:
            images[cam].append(obs["images"][cam])

    obs = env.reset()
    for _ in range(idle_start):  # waiting before the move: action = current position
        action = env.pos.copy()
        record(obs, action)
        obs = env.step(action)
    for _ in range(int(np.ceil(2.0 * np.sqrt(2.0) / speed)) + 1):  # bounded: the square's diagonal
        if np.array_equal(env.pos, env.goal):
            break
        action = expert_action(env, speed)
        record(obs, action)
        obs = env.step(action)
    for _ in range(idle_end):  # holding at the goal
        action = env.pos.copy()
        record(obs, action)
        obs = env.step(action)

    episode = EpisodeData(
        state=np.stack(states).astype(np.float32),  # (T, 2)
        action=np.stack(actions).astype(np.float32),  # (T, 2)
        images={cam: np.stack(frames) for cam, frames in images.items()},  # (T, H, W, 3)
        task=TASK,
    )
    return episode, env.success()
