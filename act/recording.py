"""What a training run records, kept out of the loop: `Recorder`.

The loop (act.train) hands over numbers; the recorder turns them into

  * `metrics.jsonl`: one JSON row per log step ("train") and per validation ("val"), the source
    of truth for the loss plot, the web app (manager/runs.py) and the trackers;
  * the log lines (their wording is parsed by tests and read by people: keep them stable);
  * `loss_curves.png` (act.plot), redrawn whenever metrics.jsonl is;
  * the manifest's `model`, `training`, `best` and `last_validation` sections (act.manifest);
  * TensorBoard / W&B (act.tracking), fed exactly the metrics.jsonl rows;
  * `training_complete.json` at the end.

Rank 0 alone writes files and log lines. Every rank must still call `log_train` and
`validation` at the same steps: `log_train` averages the loss over ranks (a collective).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from act.distributed import DistContext
from act.manifest import Manifest, now_iso
from act.plot import write_loss_curves
from act.tracking import Trackers
from lerobot_bridge.atomic_io import atomic_write_text

if TYPE_CHECKING:
    from act.train import PreparedRun
    from act.train_state import TrainState

log = logging.getLogger("train_act")

METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss_curves.png"
COMPLETE_NAME = "training_complete.json"


def read_metrics(path: Path, max_step: int | None = None) -> list[dict]:
    """metrics.jsonl rows (skipping a torn last line), optionally only up to a step (resume)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if max_step is None or row.get("step", 0) <= max_step:
                rows.append(row)
    return rows


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Recorder:
    """Metrics rows, log lines, the plot, the manifest, trackers and the progress bar of one rank.

    Between two log steps it keeps on-device running sums of (l1, kl, loss), so a step costs no
    device->host sync; `log_train` reads them once. It also times how long the loop waited for
    the loader (`batch_arrived` / `step_done`), the `data_wait_fraction` of each train row.
    """

    def __init__(self, prep: PreparedRun, ctx: DistContext, state: TrainState, model_summary: dict[str, Any],
                 amp_dtype: torch.dtype | None) -> None:
        self.prep, self.ctx, self.state = prep, ctx, state
        self.main = ctx.is_main
        self.run_dir = Path(prep.run_dir)
        self.model_summary = model_summary  # the manifest's "model" section
        self.precision = "bf16 autocast" if amp_dtype else "fp32"
        self.metrics_path = self.run_dir / METRICS_NAME
        # A resumed run keeps the rows up to its saved step and drops what a killed session wrote after.
        self.metrics = (read_metrics(self.metrics_path, max_step=state.global_step)
                        if self.main and prep.resume else [])
        self.manifest = Manifest.load_or_new(prep.manifest_path) if self.main else None
        self.last_val: dict[str, Any] | None = None  # the latest validation figures (manifest)
        self.start_step = state.global_step
        self.trackers = Trackers(self.run_dir, prep.run_name, prep.tensorboard and self.main,
                                 prep.wandb_project if self.main else None, state.global_step,
                                 {"prepared": asdict(prep)})
        self.bar = None

    # -------------------------------------------------------------------------- start
    def start(self, has_val: bool) -> None:
        """The first manifest, the opening log lines, the progress bar (a terminal only), the timers."""
        prep, state = self.prep, self.state
        self.write_manifest()
        if self.main:
            if not has_val:
                log.warning("only %d episode(s) and no validation split: best checkpoint = last",
                            len(prep.train_ids))
            log.info(
                "training: %d train / %d val episodes, %d epochs x %d steps = %d steps, global batch %d "
                "(per rank %s), %s, %s",
                len(prep.train_ids), len(prep.val_ids), prep.num_epochs, prep.steps_per_epoch,
                prep.total_steps, prep.global_batch, prep.rank_batch_sizes, self.ctx.device,
                self.precision,
            )
        if self.main and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=prep.total_steps, initial=state.global_step, unit="step",
                            dynamic_ncols=True)
        self.acc = torch.zeros(3, device=self.ctx.device)  # (3,) sums of l1, kl, loss since the last log line
        self.acc_n = 0
        self.t_log, self.samples_at_log = time.perf_counter(), state.samples_seen
        self.data_wait = 0.0  # seconds spent waiting for the loader since the last log line
        self.t_step_end = time.perf_counter()

    # -------------------------------------------------------------------------- every step
    def batch_arrived(self) -> None:
        self.data_wait += time.perf_counter() - self.t_step_end

    def train_step(self, out: dict[str, torch.Tensor]) -> None:
        """Add one step's l1, kl, loss (0-d tensors, still on the device) to the running sums."""
        self.acc += torch.stack([out["l1"], out["kl"], out["loss"]]).detach().float()  # (3,)
        self.acc_n += 1
        if self.bar is not None:
            self.bar.update(1)

    def step_done(self) -> None:
        self.t_step_end = time.perf_counter()

    # -------------------------------------------------------------------------- log steps
    def log_train(self, lr: float) -> None:
        """A "train" row and log line: the global-batch mean of l1, kl, loss since the last one.

        Collective (every rank, same step): the per-rank means are all-reduced. `lr` is the rate
        the last step used.
        """
        prep, ctx, state = self.prep, self.ctx, self.state
        # Global-batch mean: weight each rank's mean by its share of the global batch.
        means = self.acc / self.acc_n * (prep.rank_batch_sizes[ctx.rank] / prep.global_batch * ctx.world_size)
        if ctx.distributed:
            torch.distributed.all_reduce(means)
            means /= ctx.world_size
        l1, kl, loss = means.tolist()
        now = time.perf_counter()
        rate = (state.samples_seen - self.samples_at_log) / max(now - self.t_log, 1e-9)
        eta = (prep.total_steps - state.global_step) * prep.global_batch / rate if rate > 0 else math.inf
        wait_fraction = min(1.0, self.data_wait / max(now - self.t_log, 1e-9))
        self.record({
            "kind": "train", "epoch": state.epoch + (state.step_in_epoch / prep.steps_per_epoch),
            "step": state.global_step, "loss": loss, "l1": l1, "kl": kl, "lr": lr,
            "samples_per_second": rate, "data_wait_fraction": wait_fraction, "time": now_iso(),
        })
        if self.main:
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", l1=f"{l1:.4f}", kl=f"{kl:.4f}")
            else:
                log.info(
                    "epoch %d/%d step %d/%d loss %.4f l1 %.4f kl %.4f lr %.2e %.1f samples/s "
                    "(data wait %.0f%%) ETA %s",
                    state.epoch + 1, prep.num_epochs, state.global_step, prep.total_steps, loss, l1, kl, lr,
                    rate, 100 * wait_fraction, format_eta(eta),
                )
        self.acc.zero_()
        self.acc_n, self.t_log, self.samples_at_log, self.data_wait = 0, now, state.samples_seen, 0.0
        self.write_metrics()

    def validation(self, figures: dict[str, Any]) -> None:
        """A "val" row and log line (figures from act.train.validate, with epoch and step)."""
        self.last_val = figures
        self.record({"kind": "val", **figures, "time": now_iso()})
        if self.main:
            log.info(
                "validation epoch %d step %d: loss %.4f l1 %.4f kl %.4f | deploy L1 (z=0) %.4f vs "
                "mean-action %.4f",
                figures["epoch"], figures["step"], figures["val_loss"], figures["val_l1"], figures["val_kl"],
                figures["val_l1_deploy"], figures["val_l1_mean_action"],
            )

    def record(self, row: dict[str, Any]) -> None:
        self.metrics.append(row)
        if self.main:
            self.trackers.log(row)

    def write_metrics(self) -> None:
        """Rewrite metrics.jsonl (atomically) and redraw the plot from it."""
        if self.main:
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self.metrics))
            write_loss_curves(self.run_dir / PLOT_NAME, self.metrics)  # deploy L1 vs the baseline too

    # -------------------------------------------------------------------------- the manifest
    def figures(self, outcome: str) -> dict[str, Any]:
        """The manifest's "training" section: what ran, how far, how fast."""
        prep, ctx, state = self.prep, self.ctx, self.state
        device = ctx.device
        elapsed = state.seconds()
        return {
            "outcome": outcome,
            "world_size": ctx.world_size,
            "device": str(device.type),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": self.precision,
            "per_rank_batch": prep.rank_batch_sizes,
            "global_batch": prep.global_batch,
            "steps_per_epoch": prep.steps_per_epoch,
            "epochs_planned": prep.num_epochs,
            "steps_planned": prep.total_steps,
            "epochs_completed": state.epoch,
            "steps_completed": state.global_step,
            "samples_seen": state.samples_seen,
            "seconds": round(elapsed, 3),
            "samples_per_second": round(state.samples_seen / elapsed, 3) if elapsed > 0 else None,
            "resumed_from": state.resumed_from,
            "dataloader_workers_per_rank": prep.num_workers,
        }

    def write_manifest(self, outcome: str = "running") -> None:
        if not self.main:
            return
        self.manifest.update(
            model=self.model_summary,
            backbone_pretrained=self.model_summary["backbone_pretrained"],
            training=self.figures(outcome),
            best=self.state.best,
            last_validation=self.last_val,
        )
        self.manifest.write()

    # -------------------------------------------------------------------------- the end
    def interrupted(self, resume_path: Path) -> dict[str, Any]:
        """After the state was saved: metrics, manifest ("interrupted"), the how-to-continue line."""
        self.write_metrics()
        self.write_manifest("interrupted")
        if self.main:
            log.warning("interrupted at epoch %d step %d: state saved to %s; run the same command "
                        "again to continue", self.state.epoch + 1, self.state.global_step, resume_path)
        self.trackers.close()
        return self.figures("interrupted")

    def completed_figures(self) -> dict[str, Any]:
        """The final "training" section (rank 0): this session's time banked, whole-run throughput."""
        state = self.state
        state.bank_time()  # from here on figures() adds nothing to train_seconds
        result = self.figures("completed")
        result["seconds"] = round(state.train_seconds, 3)
        result["samples_per_second"] = (round(state.samples_seen / state.train_seconds, 3)
                                        if state.train_seconds else None)
        result["steps_this_session"] = state.global_step - self.start_step
        return result

    def log_verdict(self, verdict: dict[str, Any] | None) -> None:
        if verdict is not None:
            if verdict["beats_mean_action_baseline"]:
                log.info("%s", verdict["message"])
            else:
                log.warning("%s\nWARNING: %s\n%s", "!" * 100, verdict["message"], "!" * 100)

    def write_completion(self, result: dict[str, Any], verdict: dict[str, Any] | None,
                         ranking: list[dict[str, Any]]) -> None:
        """training_complete.json: the run finished; its figures, best, verdict and ranking."""
        atomic_write_text(self.run_dir / COMPLETE_NAME, json.dumps({"finished_at": now_iso(), **result,
                                                                     "best": self.state.best,
                                                                     "verdict": verdict,
                                                                     "checkpoint_ranking": ranking},
                                                                    indent=2) + "\n")

    def completed(self, result: dict[str, Any], verdict: dict[str, Any] | None,
                  ranking: list[dict[str, Any]]) -> None:
        """The final manifest (a failing verdict becomes a note), the last log line, trackers closed."""
        state = self.state
        self.write_manifest("completed")
        notes = self.manifest.data.get("notes", [])
        if verdict is not None and not verdict["beats_mean_action_baseline"]:
            notes = [*notes, verdict["message"]]
        self.manifest.update(training=result, verdict=verdict, checkpoint_ranking=ranking, notes=notes)
        self.manifest.write()
        best = state.best
        log.info("training done: %d steps, %d samples in %.1f s (%.1f samples/s); best epoch %s step %s",
                 state.global_step, state.samples_seen, state.train_seconds,
                 result["samples_per_second"] or 0,
                 best.get("epoch") if best else None, best.get("step") if best else None)
        self.trackers.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
