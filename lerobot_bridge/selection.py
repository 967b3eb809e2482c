"""Which source episodes to convert: `--episodes` / `--exclude_episodes`, for every input kind.

A spec is a comma-separated list of source episode indices and inclusive ranges ("0-9,12,20-24"),
as in LeRobot's `--dataset.episodes`. Selection happens in each converter's planning step, before
anything is decoded, and goes into the fingerprint: a changed selection converts again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lerobot_bridge.errors import DatasetError

_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_episode_spec(spec: str | Sequence[int] | None, flag: str = "--episodes") -> list[int] | None:
    """"0-3,7" -> [0, 1, 2, 3, 7] (sorted, unique); a list of ints passes through; None stays None.

    Raises ValueError naming the flag and the bad item (the CLIs turn it into a usage error)."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        values = list(spec)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise ValueError(f"{flag}: episode indices must be integers >= 0, got {values!r}")
        return sorted(set(values))
    out: set[int] = set()
    for item in spec.split(","):
        if not item.strip():
            continue
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"{flag} {spec!r}: {item.strip()!r} is not an index or a range such as 3-7")
        start, stop = int(match.group(1)), int(match.group(2) or match.group(1))
        if stop < start:
            raise ValueError(f"{flag} {spec!r}: the range {item.strip()} runs backwards")
        out.update(range(start, stop + 1))
    if not out:
        raise ValueError(f"{flag} {spec!r}: names no episode")
    return sorted(out)


def select_episodes(available: Sequence[int], episodes: Sequence[int] | None,
                    exclude_episodes: Sequence[int] | None, where: str) -> list[int]:
    """The source indices to convert, in source order; DatasetError for an index the input lacks.

    where: the dataset (or file) the indices belong to, for the message.
    """
    have = list(available)
    known = set(have)
    for flag, chosen in (("--episodes", episodes), ("--exclude_episodes", exclude_episodes)):
        missing = sorted(set(chosen or ()) - known)
        if missing:
            span = f"{min(have)}..{max(have)}" if have else "none"
            raise DatasetError(f"{where}: {flag} names episode(s) {missing[:20]} that it does not have "
                               f"(it has {len(have)} episodes, indices {span})")
    wanted = known if episodes is None else set(episodes)
    dropped = set(exclude_episodes or ())
    keep = [i for i in have if i in wanted and i not in dropped]
    if not keep:
        raise DatasetError(f"{where}: --episodes / --exclude_episodes leave no episode to convert")
    return keep
