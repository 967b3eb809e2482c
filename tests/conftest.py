import os
import signal
import time
import warnings
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
LEROBOT_FIXTURES = DATA / "lerobot"
# Processes a test starts that must not outlive it: the CLI, torchrun, the manager.
OURS = ("train_lerobot_to_act", "torch.distributed.run", "torchrun", "-m\0manager", "lerobot_bridge")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return LEROBOT_FIXTURES


def descendants(pid: int) -> set[int]:
    """Every live process below pid (children of children too), from /proc."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


@pytest.fixture(autouse=True)
def no_process_outlives_its_test(request):
    """A failed test can leave its CLI running (e.g. a wait that timed out): spinning on the CPU it
    slows every later test (a CI run once ran out of time that way). Such a process gets SIGUSR1
    first (the CLI prints every thread's stack: where it was stuck), then SIGKILL, with a warning."""
    yield
    if not Path("/proc/self/task").exists():
        return
    left = {p: _cmdline(p) for p in descendants(os.getpid())}
    left = {p: cmd for p, cmd in left.items() if any(k in cmd for k in OURS)}
    if not left:
        return
    for pid in left:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass
    time.sleep(1.0)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    warnings.warn(f"{request.node.nodeid}: killed processes it left running: "
                  f"{[cmd.replace(chr(0), ' ')[:120] for cmd in left.values()]}", stacklevel=1)
