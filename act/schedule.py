"""Learning-rate schedules, as a pure function of the optimizer step.

Upstream ACT trains at a constant rate (the default here); Innate's trainer warms up linearly and
then decays along a cosine. Computing the rate from the global step alone, instead of keeping a
scheduler object, is what makes a resumed run continue on exactly the same curve: the step is
in resume_state.pt, and nothing else needs saving.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """Multiplier of the base learning rate for optimizer step `step` (0-based, < total_steps).

    warmup: (step + 1) / warmup_steps for the first warmup_steps steps, so the first step is
        not taken at rate 0 and step warmup_steps - 1 reaches the full rate;
    constant: 1 afterwards; cosine: 0.5 * (1 + cos(pi * (step - W) / (total_steps - W))), from 1
        at the end of the warm-up down towards 0 at the last step.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))
