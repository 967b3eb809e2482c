"""Closed-loop evaluation of a trained run on the reaching task, on seeds never recorded.

Policies are loaded with `act.policy.ACTRunner` (the same inference path a user deploys):
- "chunk": query every `chunk_size` steps and execute the chunk open loop (upstream default);
- "ensemble": query every step and average overlapping chunks (upstream temporal aggregation).
Baselines that cannot see the goal, so they bound what the state alone gets:
- "blind": the same policy (chunk mode) given pictures with the goal erased;
- "mean_action": always command the dataset's mean action (from dataset_stats.pkl).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .env import CAMERAS, ReachConfig, ReachEnv

Policy = Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]


def rollout(
    policy: Policy, seed: int, cfg: ReachConfig | None = None, show_goal: bool = True
) -> tuple[bool, float]:
    """Run one closed-loop episode of cfg.max_steps steps -> (success, final distance to goal)."""
    env = ReachEnv(seed, cfg)
    env.reset()
    obs = env.observation(show_goal)  # a blind policy must not see the goal at t = 0 either
    for _ in range(env.cfg.max_steps):
        action = policy(obs["state"], obs["images"])
        env.step(action)
        obs = env.observation(show_goal)
    return env.success(), env.distance()


def success_rate(
    make_policy: Callable[[], Policy],
    seeds: Iterable[int],
    cfg: ReachConfig | None = None,
    show_goal: bool = True,
    progress: str | None = None,
    every: int = 10,
) -> dict:
    """Fresh policy state per episode (make_policy is called once per seed).

    progress: a label; then a line every `every` episodes (episodes done, successes, elapsed time).
    """
    start = time.perf_counter()
    seeds = list(seeds)
    results = []
    for seed in seeds:
        results.append(rollout(make_policy(), seed, cfg, show_goal))
        done = len(results)
        if progress and (done % every == 0 or done == len(seeds)):
            wins = sum(s for s, _ in results)
            elapsed = time.perf_counter() - start
            print(f"[demo]   {progress:<11} {done:3d}/{len(seeds)} episodes, {wins:3d} successes, "
                  f"{elapsed:6.1f} s", flush=True)
    successes = [s for s, _ in results]
    distances = np.array([d for _, d in results])
    return {
        "success_rate": float(np.mean(successes)),
        "episodes": len(results),
        "median_final_distance": float(np.median(distances)),
        "seconds": round(time.perf_counter() - start, 1),
    }


def camera_mapping(camera_names: list[str]) -> dict[str, str]:
    """Policy camera name -> env camera. The bridge names cameras after the LeRobot key
    (`observation.images.top` -> `top` or the full key); match on the key's last part."""
    mapping = {}
    for name in camera_names:
        matches = [cam for cam in CAMERAS if name == cam or name.split(".")[-1] == cam]
        if len(matches) != 1:
            raise ValueError(f"policy camera {name!r} matches none of the demo cameras {CAMERAS}")
        mapping[name] = matches[0]
    return mapping


def runner_policy(runner) -> Policy:
    """Wrap an ACTRunner (reset already called) as a Policy over the env's camera names."""
    mapping = camera_mapping(list(runner.cfg.camera_names))

    def policy(state: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
        return runner.act(state, {name: images[cam] for name, cam in mapping.items()})

    return policy


def mean_action_policy(run_dir: Path) -> Callable[[], Policy]:
    """Always command the dataset's mean action: what the state-free average behaviour gets."""
    from act.stats import load_stats

    mean_action = np.asarray(load_stats(run_dir / "dataset_stats.pkl")["action_mean"], np.float32)

    def policy(state: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
        return mean_action

    return lambda: policy


def evaluate_run(
    run_dir: str | Path,
    seeds: Iterable[int],
    cfg: ReachConfig | None = None,
    checkpoint: str = "policy_best.ckpt",
    modes: tuple[str, ...] = ("chunk", "ensemble", "blind", "mean_action"),
    progress: bool = False,
) -> dict[str, dict]:
    """Success rates of the run's policy in each mode on `seeds` (progress: a line every 10 episodes)."""
    from act.policy import ACTRunner

    seeds = list(seeds)
    run_dir = Path(run_dir)
    results: dict[str, dict] = {}
    runners = {
        "chunk": ACTRunner.from_run_dir(run_dir, checkpoint=checkpoint, temporal_ensemble=False),
        "ensemble": ACTRunner.from_run_dir(run_dir, checkpoint=checkpoint, temporal_ensemble=True),
    }

    def fresh(runner) -> Callable[[], Policy]:
        def make() -> Policy:
            runner.reset()
            return runner_policy(runner)

        return make

    for mode in modes:
        label = mode if progress else None
        if mode in ("chunk", "ensemble"):
            results[mode] = success_rate(fresh(runners[mode]), seeds, cfg, progress=label)
        elif mode == "blind":
            results[mode] = success_rate(fresh(runners["chunk"]), seeds, cfg, show_goal=False, progress=label)
        elif mode == "mean_action":
            results[mode] = success_rate(mean_action_policy(run_dir), seeds, cfg, progress=label)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    return results
