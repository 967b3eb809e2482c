"""Forward+backward time of the ACT policy: decoder layer 0 only (ours) vs upstream's decoder.

Upstream ACT's decoder runs all 7 layers, stacks their outputs and keeps index 0; autograd then
also back-propagates (zero) gradients through layers 1..6. We compute layer 0 only: the same
output, bit for bit (tests/test_model.py). Both variants use the same model object and weights
(the flag `decoder.skip_unused_layers`), interleaved iteration by iteration so a busy machine
slows both alike.

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


def step_time(policy: ACTPolicy, batch: tuple[torch.Tensor, ...], device: torch.device) -> float:
    """One forward+backward (gradients cleared first), seconds."""
    policy.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    policy(*batch)["loss"].backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


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
    policy = ACTPolicy(cfg).to(device).train()
    policy.freeze_unused_parameters()  # as training does (is_pad_head; decoder 1..6 in upstream mode)
    decoder = policy.model.transformer.decoder
    b, chunk = args.batch, cfg.chunk_size
    batch = (
        torch.randn(b, cfg.state_dim, device=device),
        torch.randint(0, 256, (b, 1, 3, args.height, args.width), dtype=torch.uint8, device=device),
        torch.randn(b, chunk, cfg.action_dim, device=device),
        torch.zeros(b, chunk, dtype=torch.bool, device=device),
    )
    # Upstream trains nothing frozen: its layers 1..6 get (all-zero) weight gradients too.
    unused_layers = list(decoder.layers[1:].parameters())
    variants = {"layer0_only": True, "upstream_all_layers": False}
    times: dict[str, list[float]] = {name: [] for name in variants}
    print(f"device {device}, threads {torch.get_num_threads()}, batch {b}, image {args.height}x{args.width}, "
          f"{sum(p.numel() for p in policy.parameters()):,} params")
    for i in range(args.warmup + args.iters):
        for name, skip in variants.items():
            decoder.skip_unused_layers = skip
            for p in unused_layers:
                p.requires_grad_(not skip)
            t = step_time(policy, batch, device)
            if i >= args.warmup:
                times[name].append(t)
            tag = " (warmup)" if i < args.warmup else ""
            print(f"  iter {i}{tag} {name:20s} {1000 * t:9.1f} ms", flush=True)

    ours = statistics.median(times["layer0_only"])
    base = statistics.median(times["upstream_all_layers"])
    print(f"median forward+backward: layer0_only {1000 * ours:.1f} ms, "
          f"upstream_all_layers {1000 * base:.1f} ms")
    print(f"ratio upstream/ours = {base / ours:.3f}  ({100 * (1 - ours / base):.1f}% less time per step)")


if __name__ == "__main__":
    main()
