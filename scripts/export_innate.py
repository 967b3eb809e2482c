"""Export a training run as an Innate skill policy (thin wrapper over act.export_innate).

    python scripts/export_innate.py --run_dir OUT/checkpoints/RUN --skill_dir ~/skills/pick_sock [--step N]

Writes SKILL/<run_id>/act_policy_step_<N>.pth and SKILL/<run_id>/dataset_stats.pt, updates
SKILL/metadata.json's `execution` block (the previous file is kept as metadata.json.bak-<UTC>)
and prints what it wrote as JSON. Exit code 2 when the run or the skill cannot be exported.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from act.export_innate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
