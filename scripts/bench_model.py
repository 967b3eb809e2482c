"""Forward+backward time of the ACT policy: decoder layer 0 only (ours) vs upstream's decoder.

Upstream ACT's decoder runs all 7 layers, stacks their outputs and keeps index 0; autograd then
also back-propagates (zero) gradients through layers 1..6. We compute layer 0 only: the same
output, bit for bit (tests/test_model.py). Both variants use the same model object and weights
(the flag `decoder.skip_unused_layers`), interleaved iteration by iteration so a busy machine
slows both alike. It also prints the FLOPs of each variant, counted exactly on the meta device,
which do not depend on how busy the machine is.

    python scripts/bench_model.py                      # batch 8, one 480x640 camera, default config
    python scripts/bench_model.py --iters 5 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from act.act_policy import ACTPolicy
from act.config import ACTConfig


def step_time(policy: ACTPolicy, batch: tuple[torch.Tensor, ...], device: torch.device
              ) -> tuple[float, float]:
    """One forward+backward (gradients cleared first) -> (wall seconds, process CPU seconds).

    CPU seconds (all threads) barely move when other processes share the cores, wall time does.
    """
    policy.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    policy(*batch)["loss"].backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def set_variant(policy: ACTPolicy, skip_unused_layers: bool) -> None:
    """Ours: layer 0 only, layers 1..N-1 frozen (as training does). Upstream: all layers run and,
    with nothing frozen, layers 1..N-1 also get (all-zero) weight gradients."""
    decoder = policy.model.transformer.decoder
    decoder.skip_unused_layers = skip_unused_layers
    for p in decoder.layers[1:].parameters():
        p.requires_grad_(not skip_unused_layers)


def make_batch(cfg: ACTConfig, b: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    return (
        torch.randn(b, cfg.state_dim),
        torch.randint(0, 256, (b, 1, 3, height, width), dtype=torch.uint8),
        torch.randn(b, cfg.chunk_size, cfg.action_dim),
        torch.zeros(b, cfg.chunk_size, dtype=torch.bool),
    )


def count_flops(cfg: ACTConfig, b: int, height: int, width: int) -> dict[str, int]:
    """FLOPs of one forward+backward per variant, counted on the meta device (no compute, exact)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        policy = ACTPolicy(cfg).train()
        batch = make_batch(cfg, b, height, width)
    policy.freeze_unused_parameters()
    flops = {}
    for name, skip in VARIANTS.items():
        set_variant(policy, skip)
        with FlopCounterMode(display=False) as counter:
            policy(*batch)["loss"].backward()
        flops[name] = counter.get_total_flops()
        policy.zero_grad(set_to_none=True)
    return flops


VARIANTS = {"layer0_only": True, "upstream_all_layers": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per variant")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = ACTConfig()  # upstream defaults: hidden 512, FFN 3200, 4 enc / 7 dec layers, chunk 100, dim 14
    b = args.batch

    flops = count_flops(cfg, b, args.height, args.width)
    ours_f, base_f = flops["layer0_only"], flops["upstream_all_layers"]
    print(f"FLOPs per forward+backward (batch {b}): layer0_only {ours_f / 1e12:.3f} T, "
          f"upstream_all_layers {base_f / 1e12:.3f} T, ratio {base_f / ours_f:.3f}")

    policy = ACTPolicy(cfg).to(device).train()
    policy.freeze_unused_parameters()  # as training does (is_pad_head; decoder 1..6 in upstream mode)
    batch = tuple(t.to(device) for t in make_batch(cfg, b, args.height, args.width))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu_times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    print(f"device {device}, threads {torch.get_num_threads()}, batch {b}, image {args.height}x{args.width}, "
          f"{sum(p.numel() for p in policy.parameters()):,} params")
    for i in range(args.warmup + args.iters):
        for name, skip in VARIANTS.items():
            set_variant(policy, skip)
            wall, cpu = step_time(policy, batch, device)
            if i >= args.warmup:
                times[name].append(wall)
                cpu_times[name].append(cpu)
            tag = " (warmup)" if i < args.warmup else ""
            print(f"  iter {i}{tag} {name:20s} wall {1000 * wall:9.1f} ms   cpu {1000 * cpu:9.1f} ms",
                  flush=True)

    for label, series in (("wall", times), ("process cpu", cpu_times)):
        ours = statistics.median(series["layer0_only"])
        base = statistics.median(series["upstream_all_layers"])
        print(f"median {label} forward+backward: layer0_only {1000 * ours:.1f} ms, "
              f"upstream_all_layers {1000 * base:.1f} ms; ratio upstream/ours = {base / ours:.3f} "
              f"({100 * (1 - ours / base):.1f}% less time per step)")

if __name__ == "__main__":
    main()
