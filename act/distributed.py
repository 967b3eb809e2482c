"""Which processes to run and on what: the --gpus / --batch_mode arithmetic and DDP set-up.

The CLI turns `--gpus` into a `LaunchPlan` before any work (so a bad value fails at once),
runs one process itself when one is enough, and otherwise re-executes itself through
`python -m torch.distributed.run --standalone` (torchrun). Each worker then calls
`init_distributed()`, which reads torchrun's environment.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


class UsageError(ValueError):
    """A command-line value or combination that cannot work; the CLI exits 2 with the message."""


@dataclass(frozen=True)
class LaunchPlan:
    device_type: str  # "cuda" or "cpu"
    nproc: int  # processes to run (1 = no torchrun)
    gpu_ids: tuple[int, ...]  # visible CUDA device ids used (empty on CPU)
    backend: str  # "nccl", "gloo" or "none" (single process)
    warning: str | None = None


def plan_launch(gpus: str, cuda_device_count: int) -> LaunchPlan:
    """Resolve --gpus: `all`, `0,1` (device ids), `cpu` or `cpu:N` (N gloo processes)."""
    value = gpus.strip().lower()
    if value == "all":
        if cuda_device_count == 0:
            return LaunchPlan(
                "cpu", 1, (), "none", "--gpus all: no CUDA GPU is visible; training on the CPU (slow)"
            )
        ids = tuple(range(cuda_device_count))
    elif value == "cpu" or value.startswith("cpu:"):
        n_text = value[4:] if value.startswith("cpu:") else "1"
        if not n_text.isdigit() or int(n_text) < 1:
            raise UsageError(f"--gpus {gpus}: expected cpu or cpu:N with N >= 1 (e.g. --gpus cpu:2)")
        n = int(n_text)
        return LaunchPlan("cpu", n, (), "gloo" if n > 1 else "none")
    else:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise UsageError(
                f"--gpus {gpus}: expected 'all', a comma-separated list of GPU ids such as 0,1, "
                "'cpu' or 'cpu:N'"
            )
        ids = tuple(int(p) for p in parts)
        if len(set(ids)) != len(ids):
            raise UsageError(f"--gpus {gpus}: a GPU id is listed twice")
        visible = list(range(cuda_device_count))
        missing = [i for i in ids if i >= cuda_device_count]
        if missing:
            raise UsageError(
                f"--gpus {gpus}: GPU id(s) {missing} do not exist; visible GPU ids: "
                f"{visible if visible else 'none (no CUDA GPU visible; use --gpus cpu)'}"
            )
    return LaunchPlan("cuda", len(ids), ids, "nccl" if len(ids) > 1 else "none")


@dataclass(frozen=True)
class LauncherEnv:
    """Rank facts set by an outside launcher (torchrun, srun + torchrun, a Kubernetes PyTorchJob)."""

    rank: int
    world_size: int
    local_rank: int  # 0 when the launcher sets none (one process per pod)


def outside_launcher_env(environ: dict[str, str] | None = None) -> LauncherEnv | None:
    """The launcher's RANK / WORLD_SIZE / LOCAL_RANK when the CLI was started by one, else None.

    A PyTorchJob sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK but no LOCAL_RANK: one
    process per pod, on its device 0.
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise UsageError(f"RANK={env.get('RANK')!r} WORLD_SIZE={env.get('WORLD_SIZE')!r} "
                         f"LOCAL_RANK={env.get('LOCAL_RANK')!r}: expected integers from the launcher") from e
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise UsageError(f"RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local_rank}: expected 0 <= RANK < "
                         "WORLD_SIZE and LOCAL_RANK >= 0")
    return LauncherEnv(rank, world, local_rank)


def plan_under_launcher(gpus: str, launcher: LauncherEnv, cuda_device_count: int) -> LaunchPlan:
    """The plan when an outside launcher already started WORLD_SIZE processes: this one uses the
    GPU of its LOCAL_RANK (or the CPU). A --gpus that asks for something else is an error."""
    value = gpus.strip().lower()
    world = launcher.world_size
    if value == "cpu" or (value.startswith("cpu:") and value[4:] == str(world)):
        return LaunchPlan("cpu", world, (), "gloo" if world > 1 else "none")
    if value != "all":
        raise UsageError(
            f"--gpus {gpus} contradicts the launcher, which started {world} process(es) (WORLD_SIZE={world}, "
            f"this one LOCAL_RANK={launcher.local_rank}): under torchrun / srun / a PyTorchJob each process "
            "uses the GPU of its LOCAL_RANK; pass --gpus all (or --gpus cpu), and choose GPUs with the "
            "launcher (--nproc_per_node, CUDA_VISIBLE_DEVICES)"
        )
    if cuda_device_count == 0:
        return LaunchPlan("cpu", world, (), "gloo" if world > 1 else "none",
                          "--gpus all: no CUDA GPU is visible; training on the CPU (slow)")
    if launcher.local_rank >= cuda_device_count:
        raise UsageError(f"LOCAL_RANK={launcher.local_rank} but only {cuda_device_count} GPU(s) are visible "
                         "on this node: start at most one process per GPU")
    return LaunchPlan("cuda", world, (launcher.local_rank,), "nccl" if world > 1 else "none")


def rank_batch_sizes(batch_size: int, world_size: int, batch_mode: str) -> list[int]:
    """Per-rank batch sizes.

    fixed_global: the global batch is batch_size, split as evenly as possible (the first
    batch_size % world_size ranks take one more) so the total is exact.
    fixed_per_gpu: every rank takes batch_size; the global batch is world_size * batch_size.
    """
    if batch_size < 1:
        raise UsageError("--batch_size must be >= 1")
    if batch_mode == "fixed_per_gpu":
        return [batch_size] * world_size
    if batch_mode != "fixed_global":
        raise UsageError(f"--batch_mode {batch_mode}: expected fixed_global or fixed_per_gpu")
    if batch_size < world_size:
        raise UsageError(
            f"--batch_size {batch_size} is smaller than the {world_size} processes: with "
            "--batch_mode fixed_global every process needs at least one sample; raise --batch_size, "
            "select fewer GPUs with --gpus, or use --batch_mode fixed_per_gpu"
        )
    base, extra = divmod(batch_size, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    flag_group: object | None = None  # a gloo group for cheap CPU-side all-reduces (stop flag)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.flag_group)

    def any_rank(self, flag: bool) -> bool:
        """True if any rank passes True (every rank gets the same answer).

        Goes over the gloo group with a CPU tensor, so it never waits for the GPU stream.
        """
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.flag_group)
        return bool(t.item())

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum a few floats across ranks (validation totals), in float64 on the CPU."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.flag_group)
        return t.tolist()

    def gather_objects(self, obj: object) -> list[object]:
        if not self.distributed:
            return [obj]
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.flag_group)
        return out


def running_under_torchrun() -> bool:
    """Started by a launcher with rank variables (torchrun, ours or the user's, or a PyTorchJob)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device_type: str, gpu_ids: list[int] | tuple[int, ...] = ()) -> DistContext:
    """Set up this process from torchrun's environment (or a single process without it).

    Under torchrun the launcher has narrowed CUDA_VISIBLE_DEVICES to the chosen GPUs, so local
    rank i uses cuda:i; a single process uses the one chosen id directly.
    """
    if not running_under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        index = gpu_ids[0] if gpu_ids else 0
        device = torch.device("cuda", index) if device_type == "cuda" else torch.device("cpu")
        if device_type == "cuda":
            torch.cuda.set_device(device)
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # a PyTorchJob pod: one process, device 0
    timeout = datetime.timedelta(minutes=30)
    if device_type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
        flag_group = dist.new_group(backend="gloo", timeout=timeout)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timeout)
        flag_group = None  # the default group is already gloo
    return DistContext(rank, world_size, local_rank, device, flag_group)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
