"""A 2-D reaching task in which only the cameras know where the goal is.

A point (the "end effector") moves in the square [-1, 1]^2. Its position is the robot state;
the goal's position is NOT in the state: it appears only in the two camera images. A policy
that ignores the images can do no better than guess a direction, so closed-loop success
measures whether training really used the cameras (frame alignment, camera order, image
normalization, inference path), not only whether a loss went down.

Action = commanded position (like a position-controlled arm, and like the LeRobot datasets
where action[t] ~ state[t + 1]). The point moves toward the command by at most `max_step`
per step. Deterministic given the seed: `ReachEnv(seed)` always builds the same episode.

Cameras (RGB, uint8, (H, W, 3)):
- "top": fixed overhead view of the whole square: red goal disk, green point.
- "wrist": view centred on the point (it moves with it), twice the field of view, with a
  different background and colours: yellow goal disk, white cross-hair at the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAMERAS = ("top", "wrist")


@dataclass(frozen=True)
class ReachConfig:
    image_size: int = 64  # square images, even (yuv420p)
    # The goal is one of `num_goals` spots on a circle of radius `goal_distance` around the
    # centre (0 = anywhere on the ring goal_radius_range). Eight discrete spots keep the task
    # learnable by a tiny ACT in a few CPU minutes, and a policy that cannot see the goal
    # succeeds at most 1 time in 8 (by committing to one spot), in practice never.
    num_goals: int = 8
    goal_distance: float = 0.65
    goal_radius_range: tuple[float, float] = (0.45, 0.85)
    start_half_width: float = 0.25  # start position uniform in [-w, w]^2
    max_step: float = 0.1  # how far the point can move per step
    # Success: after max_steps the point's centre is within this of the goal's centre, i.e.
    # inside the lit goal disk (radius goal_px / 32 = 0.125) with margin; neighbouring goal
    # spots are 0.5 apart.
    success_radius: float = 0.15
    max_steps: int = 40  # closed-loop episode length
    goal_px: float = 4.0  # goal disk radius in "top" pixels (at 64 px)
    point_px: float = 2.5


class ReachEnv:
    """One episode of the reaching task. `reset()` -> observation, `step(action)` -> observation."""

    def __init__(self, seed: int, cfg: ReachConfig | None = None):
        self.cfg = cfg or ReachConfig()
        rng = np.random.default_rng(seed)
        if self.cfg.num_goals > 0:
            angle = 2.0 * np.pi * int(rng.integers(self.cfg.num_goals)) / self.cfg.num_goals
            distance = self.cfg.goal_distance
        else:
            angle = rng.uniform(0.0, 2.0 * np.pi)
            distance = rng.uniform(*self.cfg.goal_radius_range)
        self.goal = np.array([np.cos(angle), np.sin(angle)], np.float32) * np.float32(distance)  # (2,)
        w = self.cfg.start_half_width
        self.start = rng.uniform(-w, w, size=2).astype(np.float32)  # (2,)
        self.rng = rng  # the expert draws its timing from the same stream: one seed, one episode
        self.pos = self.start.copy()
        n = self.cfg.image_size
        # Pixel centres in [-1, 1] coordinates, y up (row 0 is the top of the picture).
        coords = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
        self._x = coords[None, :]  # (1, W)
        self._y = -coords[:, None]  # (H, 1)

    def reset(self) -> dict:
        self.pos = self.start.copy()
        return self.observation()

    def step(self, action: np.ndarray) -> dict:
        """Move toward the commanded position (2,), at most max_step, staying in the square."""
        delta = np.asarray(action, np.float32).reshape(2) - self.pos
        norm = float(np.linalg.norm(delta))
        if norm > self.cfg.max_step:
            delta *= self.cfg.max_step / norm
        self.pos = np.clip(self.pos + delta, -1.0, 1.0).astype(np.float32)
        return self.observation()

    def distance(self) -> float:
        return float(np.linalg.norm(self.pos - self.goal))

    def success(self) -> bool:
        return self.distance() < self.cfg.success_radius

    def observation(self, show_goal: bool = True) -> dict:
        """{"state": (2,) float32, "images": {camera: (H, W, 3) uint8}}.

        show_goal=False erases the goal from the pictures: what a policy that cannot see the
        target gets (the blind baseline).
        """
        images = {cam: self.render(cam, show_goal) for cam in CAMERAS}
        return {"state": self.pos.copy(), "images": images}

    # ------------------------------------------------------------------------- rendering

    def render(self, camera: str, show_goal: bool = True) -> np.ndarray:
        # Disk sizes are given in pixels of a 64-px image; in [-1, 1] units that is px / 32.
        goal_r, point_r = self.cfg.goal_px / 32.0, self.cfg.point_px / 32.0
        if camera == "top":
            img = np.empty((self.cfg.image_size, self.cfg.image_size, 3), np.float32)
            img[:] = (40, 40, 48)
            if show_goal:
                self._glow(img, self.goal, (230, 40, 40))
                self._disk(img, self.goal, goal_r, (230, 40, 40), 1.0)
            self._disk(img, self.pos, point_r, (40, 220, 60), 1.0)
        elif camera == "wrist":
            # Egocentric: world = pos + 2 * pixel coordinates (field of view [-2, 2] around the point).
            img = np.empty((self.cfg.image_size, self.cfg.image_size, 3), np.float32)
            shade = (0.5 + 0.25 * self._y) * np.ones_like(self._x)  # (H, W) vertical gradient
            img[:] = shade[..., None] * np.array([60, 90, 160], np.float32)
            if show_goal:
                self._glow(img, (self.goal - self.pos) / 2.0, (250, 220, 40))
                self._disk(img, (self.goal - self.pos) / 2.0, goal_r, (250, 220, 40), 1.0)
            c, arm = self.cfg.image_size // 2, self.cfg.image_size // 16
            img[c - 1 : c + 1, c - arm : c + arm] = 255.0
            img[c - arm : c + arm, c - 1 : c + 1] = 255.0
        else:
            raise KeyError(f"unknown camera {camera!r}; cameras are {CAMERAS}")
        return img.round().clip(0, 255).astype(np.uint8)

    def _glow(
        self, img: np.ndarray, centre: np.ndarray, colour, sigma: float = 0.35, strength: float = 0.5
    ) -> None:
        """A wide soft halo around the goal (a lit target). Every pixel's brightness then varies
        smoothly with the goal's position, which a randomly initialized backbone with a stride-32
        feature map (2x2 cells at 64 px) picks up far sooner than a few-pixel disk alone."""
        d2 = (self._x - centre[0]) ** 2 + (self._y - centre[1]) ** 2  # (H, W)
        alpha = (strength * np.exp(-d2 / (2.0 * sigma**2)))[..., None]  # (H, W, 1)
        img *= 1.0 - alpha
        img += alpha * np.asarray(colour, np.float32)

    def _disk(self, img: np.ndarray, centre: np.ndarray, radius: float, colour, opacity: float) -> None:
        """Anti-aliased disk (radius in [-1, 1] units): sub-pixel positions stay visible."""
        pixel = 2.0 / self.cfg.image_size
        dist = np.sqrt((self._x - centre[0]) ** 2 + (self._y - centre[1]) ** 2)  # (H, W)
        alpha = np.clip((radius - dist) / pixel + 0.5, 0.0, 1.0)[..., None] * opacity  # (H, W, 1)
        img *= 1.0 - alpha
        img += alpha * np.asarray(colour, np.float32)
