#!/usr/bin/env python
"""Train an ACT policy from a LeRobot dataset in one command.

    validate arguments -> convert to ACT HDF5 -> dataset_stats.pkl -> train -> manifest.json

Outputs: OUTPUT/checkpoints/<run_name>/{policy_best.ckpt, policy_last.ckpt,
policy_epoch_{e}_seed_{s}.ckpt, dataset_stats.pkl, policy_config.json, metrics.jsonl,
loss_curves.png} and OUTPUT/manifest.json.

This process is the launcher. It does every once-only step (conversion, stats, split) and
then trains in-process when one process is enough, or re-executes this file through
`python -m torch.distributed.run --standalone` with one worker per selected GPU (or N CPU
workers with `--gpus cpu:N`). Workers find their instructions in `prepared.json` (path in the
TRAIN_ACT_PREPARED environment variable). Signals reach the workers, which save a resumable
state; running the identical command again continues the run.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from act.distributed import (
    LauncherEnv,
    LaunchPlan,
    UsageError,
    outside_launcher_env,
)
from act.manifest import Manifest, describe_artifacts, now_iso, software_versions
from act.run_setup import (  # noqa: F401 - untrained_hold_note, convert_input: the CLI's public face
    ConversionPlan,
    conversion_dir,
    convert_input,
    discard_conversion,
    find_completed_run,
    keeps_conversion,
    lock_output_dir,
    plan_conversion,
    prepare,
    sweep_stale_temporaries,
    untrained_hold_note,
    validate_args,
)
from lerobot_bridge import DatasetError
from lerobot_bridge.options import add_conversion_flags

log = logging.getLogger("train_act")

PREPARED_ENV = "TRAIN_ACT_PREPARED"
EXIT_USAGE = 2
# --------------------------------------------------------------------------------------------
# Arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_lerobot_to_act.py",
        description="Convert a LeRobot dataset (v2.0/v2.1/v3.0) to ACT HDF5 and train an ACT policy whose "
        "checkpoints load unchanged into upstream ACT (tonyzhaozh/act).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Innate Training Manager names are accepted too: --max_steps N (= --num_epochs 0 --steps N), "
        "--learning_rate_backbone (= --lr_backbone), --world_size N (= --gpus 0,...,N-1).",
    )
    core = p.add_argument_group("core")
    core.add_argument("--batch_size", type=int, default=64,
                      help="batch size; global or per GPU depending on --batch_mode")
    core.add_argument("--num_epochs", type=int, default=12000,
                      help="epochs; one epoch = ceil(train episodes / global batch) optimizer steps of a "
                      "full global batch, every training episode at least once (random timestep)")
    core.add_argument("--steps", type=int, default=0,
                      help="total optimizer steps instead of epochs; used only with --num_epochs 0")
    core.add_argument("--learning_rate", type=float, default=5e-5,
                      help="AdamW learning rate (constant, not scaled with the number of GPUs)")
    core.add_argument("--save_interval", type=int, default=6000,
                      help="write policy_epoch_{epoch}_seed_{seed}.ckpt every this many epochs (0 = never)")
    core.add_argument("--gpus", default="all",
                      help="'all' visible GPUs, a list of GPU ids such as 0,1, 'cpu', or 'cpu:N' for N CPU "
                      "processes (gloo); more than one process is launched through torchrun")
    core.add_argument("--batch_mode", default="fixed_global", choices=("fixed_global", "fixed_per_gpu"),
                      help="fixed_global: --batch_size is the global batch, split across processes; "
                      "fixed_per_gpu: every process takes --batch_size (global = batch_size x processes)")
    core.add_argument("--num_workers", type=int, default=0,
                      help="DataLoader worker processes per GPU process; 0 = auto (on GPUs: "
                      "min(8, CPUs per process - 1); on the CPU: load in the training process)")

    model = p.add_argument_group("model")
    model.add_argument("--task_name", default="auto",
                       help="task label recorded in the manifest; auto = the dataset's most frequent task")
    model.add_argument("--run_name", default="auto",
                       help="run directory name under OUTPUT/checkpoints/; auto = task slug + a hash of the "
                       "training arguments, so the identical command finds (and resumes) the same run")
    model.add_argument("--policy_class", default="ACT", help="policy to train; supported: ACT")
    model.add_argument("--kl_weight", type=float, default=10.0, help="weight of the CVAE KL term in the loss")
    model.add_argument("--chunk_size", type=int, default=100,
                       help="actions predicted per query (num_queries)")
    model.add_argument("--hidden_dim", type=int, default=512, help="transformer width")
    model.add_argument("--dim_feedforward", type=int, default=3200, help="transformer feed-forward width")
    model.add_argument("--seed", type=int, default=42,
                       help="training seed (the train/val split does not use it)")
    model.add_argument("--nheads", type=int, default=8, help="attention heads")
    model.add_argument("--enc_layers", type=int, default=4, help="transformer encoder layers")
    model.add_argument("--dec_layers", type=int, default=7,
                       help="transformer decoder layers (upstream uses only the first, see "
                       "--use_all_decoder_layers)")
    model.add_argument("--dropout", type=float, default=0.1, help="transformer dropout")
    model.add_argument("--use_all_decoder_layers", action="store_true",
                       help="wire the decoder properly (last layer's output). Same checkpoint keys, but "
                       "upstream ACT code would load such a checkpoint silently and compute different "
                       "actions")

    bridge = p.add_argument_group("data bridge (LeRobot -> ACT HDF5)")
    add_conversion_flags(bridge, storage_default="jpeg")
    bridge.add_argument("--convert_dir", default=None,
                        help="conversion cache shared by runs: each dataset + conversion options is "
                        "converted once into DIR/<fingerprint>/ and reused by later runs; runs never "
                        "delete what is there")
    bridge.add_argument("--skip_space_check", action="store_true",
                        help="convert even when the free space is below the conversion's estimated size")
    bridge.add_argument("--keep_converted_hdf5", action="store_true",
                        help="keep the ACT HDF5 episodes in OUTPUT/converted_hdf5/ (else a temporary folder "
                        "removed at the end)")

    ours = p.add_argument_group("paths, optimization and run control")
    ours.add_argument("--input_dir", default=os.environ.get("ACT_INPUT_DIR"),
                      help="LeRobot dataset root (holds meta/info.json), an Innate skill or an ACT HDF5 "
                      "folder; required, except in the image, whose entrypoint passes $ACT_INPUT_DIR "
                      "(/data/input)")
    ours.add_argument("--output_dir", default=os.environ.get("ACT_OUTPUT_DIR"),
                      help="where checkpoints/ and manifest.json go; required, except in the image "
                      "($ACT_OUTPUT_DIR, /data/output)")
    ours.add_argument("--lr_backbone", type=float, default=None,
                      help="learning rate of the ResNet18 backbone (default: --learning_rate)")
    ours.add_argument("--backbone_weights", default=None,
                      help="torchvision resnet18 .pth file, or 'none' for random init; default: "
                      "$ACT_BACKBONE_WEIGHTS, then $TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth")
    ours.add_argument("--val_ratio", type=float, default=0.2,
                      help="fraction of episodes held out for validation (fixed split, at least 1 episode "
                      "when there are 2 or more; 0 = no validation)")
    ours.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                      help="auto: bf16 autocast on GPUs that support it, fp32 otherwise; fp32 forces fp32")
    ours.add_argument("--val_interval", type=int, default=0,
                      help="validate (and save a resumable state) every N epochs; 0 = auto (about 50 times "
                      "per run), always at the end")
    ours.add_argument("--val_samples", type=int, default=256,
                      help="size of the fixed validation set of (episode, t) pairs, spread evenly over every "
                      "validation episode")
    ours.add_argument("--log_interval", type=int, default=0,
                      help="log a line every N steps; 0 = auto (about 100 lines per run, at most every "
                      "100 steps)")
    ours.add_argument("--resume", action="store_true",
                      help="require resuming an interrupted run (error if there is nothing to resume); "
                      "without it an interrupted run is resumed anyway and a completed one is left alone")
    ours.add_argument("--fresh", action="store_true",
                      help="discard an existing run of the same name and start from scratch")
    ours.add_argument("--lr_schedule", default="constant", choices=("constant", "cosine"),
                      help="constant (upstream ACT) or cosine decay towards 0 at the last step; both after "
                      "--warmup_steps of linear warm-up. A resumed run continues the same curve")
    ours.add_argument("--warmup_steps", type=int, default=0,
                      help="optimizer steps of linear learning-rate warm-up (0 = none)")
    ours.add_argument("--augment", action="store_true",
                      help="image augmentation on the device while training (random resized crop keeping "
                      ">= 90%% of the area, brightness/contrast +-20%%, saturation +-50%%); off as upstream")
    ours.add_argument("--init_from", default=None,
                      help="fine-tune: start from a trained policy, a run directory (its policy_best.ckpt) "
                      "or a .ckpt file; shapes must match this dataset's model (stats come from this data)")
    ours.add_argument("--tensorboard", action="store_true",
                      help="also write TensorBoard event files (RUN/tensorboard/, the metrics.jsonl scalars)")
    ours.add_argument("--wandb_project", default=None,
                      help="also log to Weights & Biases in this project (optional package; "
                      "WANDB_MODE=offline and WANDB_ENTITY are honoured)")
    ours.add_argument("--prepare_only", action="store_true",
                      help="validate, convert and compute the stats, then exit without training (a SLURM "
                      "pre-step or a Kubernetes init container; the training command reuses the conversion)")
    ours.add_argument("--prepare_timeout", type=float, default=86400.0,
                      help="under an outside launcher (torchrun, srun, a PyTorchJob) ranks other than 0 "
                      "wait this many seconds for rank 0 to convert and prepare")
    return p


# --------------------------------------------------------------------------------------------
# Running the workers


def setup_logging(rank: int = 0) -> None:
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=("%(asctime)s " + (f"[rank {rank}] " if rank else "") + "%(message)s"),
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        force=True,
    )


def user_error(e: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for an error the user can act on, shown without a traceback."""
    from act.errors import RunError

    if isinstance(e, RunError):
        return e.exit_code, str(e)
    if isinstance(e, (DatasetError, UsageError)):
        return EXIT_USAGE, str(e)
    return None


def run_worker(prepared_path: Path) -> int:
    """One training process (in-process for a single process, or one of our torchrun's workers)."""
    from act.distributed import init_distributed, shutdown_distributed
    from act.train import PreparedRun, StopFlag

    prep = PreparedRun.load(prepared_path)
    stop = StopFlag()
    stop.install()
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(rank)
    try:
        ctx = init_distributed(prep.device_type, prep.gpu_ids)
        return train_rank(prep, ctx, stop)
    finally:
        shutdown_distributed()


def train_rank(prep, ctx, stop) -> int:
    """Train on this rank; the exit code. A failing rank of several leaves its error in the run
    directory (`.worker_error.rank{r}`) for rank 0 or the launcher to put into the manifest."""
    from act.train import train

    try:
        result = train(prep, ctx, stop)
        return 0 if result.outcome == "completed" else 128 + (stop.signum or signal.SIGTERM)
    except BaseException as e:
        known = user_error(e)
        if ctx.distributed:
            code, message = known or (1, oom_message(e, prep, ctx.rank) or repr(e))
            err = Path(prep.run_dir) / f".worker_error.rank{ctx.rank}"
            err.write_text(f"[exit {code}] rank {ctx.rank}: {message}\n")
            if known:
                print(f"error: [rank {ctx.rank}] {message}", file=sys.stderr)
                return code
        msg = oom_message(e, prep, ctx.rank)
        if msg:
            raise RuntimeError(msg) from e
        raise


def oom_message(e: BaseException, prep, rank: int) -> str | None:
    import torch

    if isinstance(e, torch.cuda.OutOfMemoryError):
        b = prep.rank_batch_sizes[rank] if rank < len(prep.rank_batch_sizes) else "?"
        return (f"CUDA out of memory with a per-GPU batch of {b} (global {sum(prep.rank_batch_sizes)}): "
                "lower --batch_size, spread it over more GPUs with --batch_mode fixed_global and --gpus, or "
                "keep --precision auto (bf16) instead of fp32")
    return None


def launch_torchrun(args_argv: list[str], prepared_path: Path, plan: LaunchPlan) -> int:
    """Re-execute this file under torchrun; forward SIGTERM/SIGINT; return its exit code."""
    env = dict(os.environ)
    env[PREPARED_ENV] = str(prepared_path)
    if plan.device_type == "cuda":
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(max(plan.gpu_ids) + 1)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids[i] for i in plan.gpu_ids)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={plan.nproc}",
           str(Path(__file__).absolute()), *args_argv]
    log.info("launching %d %s workers (%s): %s", plan.nproc, plan.device_type, plan.backend, " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, frame):  # noqa: ARG001
        log.warning("forwarding %s to the training workers", signal.Signals(signum).name)
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def worker_errors(run_dir: str) -> tuple[list[str], set[int]]:
    """Each failed rank's note (written by run_worker) and the exit codes they ask for."""
    messages, codes = [], set()
    for path in sorted(Path(run_dir).glob(".worker_error.rank*")):
        text = path.read_text().strip()
        match = re.match(r"\[exit (\d+)\] (.*)", text, re.S)
        if match:
            codes.add(int(match.group(1)))
            text = match.group(2)
        messages.append(text)
    return messages, codes


def finalize(manifest: Manifest, prep, rc: int, conv_dir: Path | None, keep: bool, error: str | None) -> int:
    """Status, artifacts with sha256, temporary conversion removed (unless a resume needs it)."""
    manifest.data = Manifest.load_or_new(manifest.path).data  # rank 0 may have written it
    training = manifest.data.get("training") or {}
    codes: set[int] = set()
    if error is None and rc == 0 and training.get("outcome") == "completed":
        status = "completed"
    elif training.get("outcome") == "interrupted" or rc in (128 + signal.SIGTERM, 128 + signal.SIGINT):
        status = "interrupted"
    else:
        status = "failed"
        if error is None:
            messages, codes = worker_errors(prep.run_dir) if prep else ([], set())
            detail = f": {'; '.join(messages)}" if messages else "; see its error above"
            error = f"a training worker failed (exit code {rc}){detail}"
    if prep is not None:
        for p in Path(prep.run_dir).glob(".worker_error.rank*"):
            p.unlink()
        manifest.update(artifacts=describe_artifacts(prep.run_dir, prep.output_dir))
    manifest.set_status(status, error)
    manifest.write()
    discard_conversion(conv_dir, keep, complete_too=status == "completed" or status == "failed")
    report_outputs(manifest, status)
    if status == "completed":
        return 0
    if status == "interrupted":
        log.warning("run interrupted; run the same command again to resume")
        # 143 / 130 like a process ended by the signal (torchrun itself exits 1 in that case)
        return rc if rc in (128 + signal.SIGTERM, 128 + signal.SIGINT) else 128 + signal.SIGTERM
    log.error("run failed: %s", error)
    if codes == {EXIT_USAGE}:
        return EXIT_USAGE
    return rc if rc > 0 else 1


def report_outputs(manifest: Manifest, status: str) -> None:
    """Say where everything is: the last lines a user sees, whatever the outcome."""
    run_dir = manifest.data.get("run_dir")
    lines = [f"status: {status}"]
    if run_dir and Path(run_dir).is_dir():
        names = ("policy_best.ckpt", "policy_last.ckpt", "dataset_stats.pkl", "policy_config.json",
                 "loss_curves.png")
        files = [name for name in names if (Path(run_dir) / name).exists()]
        lines.append(f"run directory: {run_dir}")
        if files:
            lines.append(f"  {', '.join(files)}")
    lines.append(f"manifest: {manifest.path}")
    for line in lines:
        log.info("%s", line)


# After SIGTERM/SIGINT before training, the run discards its temporaries and exits in about a
# second; should anything hang on the way out (a stuck thread), this many seconds later the
# process prints every thread's stack and exits anyway, inside `docker stop`'s 10 s grace.
STOP_GRACE_S = 8.0
_stop_watchdogs: list[threading.Timer] = []


def arm_stop_watchdog(signum: int) -> None:
    """Exit with 128 + signum in STOP_GRACE_S seconds unless main() returns first."""
    if _stop_watchdogs:
        return

    def hard_exit() -> None:
        name = signal.Signals(signum).name
        print(f"error: still running {STOP_GRACE_S:g} s after {name}; exiting now. Every thread's stack "
              "(please report it):", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(128 + signum)

    timer = threading.Timer(STOP_GRACE_S, hard_exit)
    timer.daemon = True
    timer.start()
    _stop_watchdogs.append(timer)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        while _stop_watchdogs:
            _stop_watchdogs.pop().cancel()


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(PREPARED_ENV):  # one of our torchrun's workers
        return run_worker(Path(os.environ[PREPARED_ENV]))

    setup_logging(int(os.environ.get("RANK", "0")) if "WORLD_SIZE" in os.environ else 0)
    from lerobot_bridge.innate import rewrite_innate_args

    argv = rewrite_innate_args(argv)  # Innate Training Manager names (--max_steps, --world_size, ...)
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    # Everything that needs no writing comes first: a typo or a bad dataset costs seconds and
    # leaves the output folder untouched.
    try:
        launcher = outside_launcher_env()
        plan = validate_args(args, torch.cuda.device_count(), launcher)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    received: dict[str, int] = {}

    def interrupt(signum, frame):  # noqa: ARG001  (SIGTERM before training: stop like Ctrl-C)
        received.setdefault("signum", signum)
        arm_stop_watchdog(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    if launcher is not None and launcher.world_size > 1 and not args.prepare_only:
        return run_under_launcher(args, argv, plan, launcher, received)
    try:
        conv_plan = plan_conversion(args)
    except (DatasetError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + received.get("signum", signal.SIGINT)
    if plan.warning:
        log.warning("%s", plan.warning)

    started = start_run(args, argv, plan, conv_plan, received)
    try:
        if started.exit_code is not None:
            return started.exit_code
        manifest, prep, conv_dir = started.manifest, started.prep, started.conv_dir
        try:
            from act.train import PREPARED_NAME

            prepared_path = Path(prep.run_dir) / PREPARED_NAME
            if plan.nproc == 1:
                rc, error = run_single(prepared_path)
            else:
                rc, error = launch_torchrun(argv, prepared_path, plan), None
            return finalize(manifest, prep, rc, conv_dir, keeps_conversion(args), error)
        except BaseException as e:
            return fail_run(manifest, conv_dir, args, e, received)
    finally:
        started.release()


@dataclass
class StartedRun:
    """What starting a run left: the manifest and the prepared run, or the exit code it ended with."""

    manifest: Manifest | None = None
    prep: object | None = None  # act.train.PreparedRun
    conv_dir: Path | None = None
    exit_code: int | None = None  # set when the run ends here (refused, already done, failed, prepared only)
    lock_fd: int | None = None  # the output folder's lock, held until release()

    def release(self) -> None:
        """Let go of the output folder (a caller in the same process may run there next)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def start_run(args: argparse.Namespace, argv: list[str], plan: LaunchPlan, conv_plan: ConversionPlan,
              received: dict[str, int]) -> StartedRun:
    """Take the output folder, write the manifest, and convert + prepare unless the identical run
    already completed. Never raises: every failure becomes an exit code with its message."""
    output_dir = Path(args.output_dir).absolute()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = lock_output_dir(output_dir)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return StartedRun(exit_code=EXIT_USAGE)
    except OSError as e:
        print(f"error: cannot create --output_dir {output_dir}: {e}", file=sys.stderr)
        return StartedRun(exit_code=EXIT_USAGE)
    sweep_stale_temporaries(output_dir)
    earlier_manifest = Manifest.load_or_new(output_dir / "manifest.json").data
    manifest = Manifest(output_dir / "manifest.json")
    manifest.update(command=[sys.argv[0], *argv], arguments=vars(args),
                    started_at=now_iso(), software=software_versions(), output_dir=str(output_dir), notes=[])
    if plan.warning:
        manifest.data["notes"].append(plan.warning)
    manifest.set_status("running")
    try:
        manifest.write()
    except OSError as e:
        print(f"error: cannot write {manifest.path} (--output_dir must be writable): {e}", file=sys.stderr)
        return StartedRun(exit_code=EXIT_USAGE, lock_fd=lock_fd)

    conv_dir = None
    try:
        done = find_completed_run(args, output_dir, conv_plan.fingerprint)
        if done is not None:
            code = report_completed(manifest, earlier_manifest, done, output_dir, args)
            return StartedRun(manifest, exit_code=code, lock_fd=lock_fd)
        conv_dir = conversion_dir(args, conv_plan.fingerprint)
        prep = prepare(args, plan, manifest, conv_plan, conv_dir)
        if args.prepare_only:
            log.info("--prepare_only: converted and prepared; the same command without --prepare_only "
                     "trains (it reuses this conversion)")
            manifest.set_status("prepared")
            manifest.write()
            report_outputs(manifest, "prepared")
            return StartedRun(manifest, prep, conv_dir, exit_code=0, lock_fd=lock_fd)
        return StartedRun(manifest, prep, conv_dir, lock_fd=lock_fd)
    except BaseException as e:
        code = fail_run(manifest, conv_dir, args, e, received)
        return StartedRun(manifest, exit_code=code, lock_fd=lock_fd)


def fail_run(manifest: Manifest, conv_dir: Path | None, args: argparse.Namespace, e: BaseException,
             received: dict[str, int]) -> int:
    """Record a run that ended before training finished normally; its exit code."""
    if isinstance(e, KeyboardInterrupt):
        signum = received.get("signum", signal.SIGINT)
        log.warning("%s before training started: nothing to resume yet", signal.Signals(signum).name)
        discard_conversion(conv_dir, keeps_conversion(args), complete_too=False)
        manifest.set_status("interrupted", "interrupted before training started")
        return end_early(manifest, 128 + signum)
    known = user_error(e)
    if known:
        print(f"error: {known[1]}", file=sys.stderr)
    else:
        traceback.print_exc()
    discard_conversion(conv_dir, keeps_conversion(args), complete_too=True)
    manifest.set_status("failed", known[1] if known else f"{type(e).__name__}: {e}")
    return end_early(manifest, known[0] if known else 1)


def end_early(manifest: Manifest, code: int) -> int:
    try:
        manifest.write()
    except OSError as e:
        print(f"error: cannot write {manifest.path}: {e}", file=sys.stderr)
    report_outputs(manifest, manifest.data["status"])
    return code


def report_completed(manifest: Manifest, earlier: dict, run_dir: Path, output_dir: Path,
                     args: argparse.Namespace) -> int:
    """The identical command already completed on this data: record it, convert nothing."""
    from act.train import COMPLETE_NAME

    log.info("the run in %s already completed on this data; not converting or training again (use "
             "--fresh to retrain, or another --run_name)", run_dir)
    if args.resume:
        raise UsageError(f"--resume: the run in {run_dir} already completed; nothing to resume "
                         "(use --fresh to train again, or another --run_name)")
    if earlier.get("run_dir") == str(run_dir):  # keep what the run that trained it recorded
        for key in ("task_name", "dataset", "conversion", "cameras", "state_dim", "action_dim", "state_names",
                    "action_names", "split", "stats", "plan", "model", "backbone_pretrained",
                    "last_validation"):
            if key in earlier:
                manifest.data.setdefault(key, earlier[key])
    complete = json.loads((run_dir / COMPLETE_NAME).read_text())
    manifest.data["notes"].append("run already completed earlier; nothing converted or trained this time")
    manifest.update(run_name=run_dir.name, run_dir=str(run_dir), training=complete,
                    best=complete.get("best"), verdict=complete.get("verdict"),
                    checkpoint_ranking=complete.get("checkpoint_ranking", []),
                    artifacts=describe_artifacts(run_dir, output_dir))
    manifest.set_status("completed")
    manifest.write()
    report_outputs(manifest, "completed")
    return 0


# --------------------------------------------------------------------------------------------
# Under an outside launcher: torchrun (SLURM srun), a Kubernetes PyTorchJob, a Kubeflow TrainJob


def run_under_launcher(args: argparse.Namespace, argv: list[str], plan: LaunchPlan, launcher: LauncherEnv,
                       received: dict[str, int]) -> int:
    """Every rank runs this CLI: the process group comes first, rank 0 prepares exactly once (the
    others wait for its answer), every rank checks it sees the same data, all train, rank 0 writes
    the manifest's verdict. The exit code is the same on every rank whenever it can be."""
    import datetime

    import torch.distributed as dist

    from act.distributed import init_distributed, shutdown_distributed
    from act.train import PREPARED_NAME, PreparedRun, StopFlag

    rank = launcher.rank
    started = StartedRun()
    ctx = init_distributed(plan.device_type, plan.gpu_ids)
    # A long wait on its own group: rank 0 may convert for an hour while the others wait.
    prep_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=args.prepare_timeout))
    host = os.uname().nodename

    def gather(obj: object) -> list:
        out: list = [None] * launcher.world_size
        dist.all_gather_object(out, obj, group=prep_group)
        return out

    def everyone_exits(code: int, message: str) -> int:
        if rank == 0 or not message.startswith("rank 0"):
            print(f"error: {message}", file=sys.stderr)
        return code

    try:
        # 1. Every rank reads the input's metadata: the same data everywhere?
        try:
            conv_plan = plan_conversion(args)
            mine = {"rank": rank, "host": host, "fingerprint": conv_plan.fingerprint}
        except (DatasetError, UsageError) as e:
            mine = {"rank": rank, "host": host, "error": str(e)}
        seen = gather(mine)
        errors = [f"rank {x['rank']} ({x['host']}): {x['error']}" for x in seen if "error" in x]
        if errors:
            return everyone_exits(EXIT_USAGE, "; ".join(errors))
        if len({x["fingerprint"] for x in seen}) > 1:
            ref = seen[0]
            other = next(x for x in seen if x["fingerprint"] != ref["fingerprint"])
            return everyone_exits(EXIT_USAGE, (
                f"the ranks see different data at --input_dir {args.input_dir}: rank {ref['rank']} on "
                f"{ref['host']} has dataset fingerprint {ref['fingerprint']}, rank {other['rank']} on "
                f"{other['host']} has {other['fingerprint']}; give every node the same dataset"))
        if plan.warning and rank == 0:
            log.warning("%s", plan.warning)

        # 2. Rank 0 prepares exactly once; the others wait for its answer.
        answer: list = [None]
        if rank == 0:
            started = start_run(args, argv, plan, conv_plan, received)
            if started.exit_code is not None:
                answer[0] = {"code": started.exit_code, "error": (started.manifest.data.get("error")
                                                                  if started.manifest else None)}
            else:
                answer[0] = {"prepared": str(Path(started.prep.run_dir) / PREPARED_NAME)}
        dist.broadcast_object_list(answer, src=0, group=prep_group)
        if "prepared" not in answer[0]:
            code, error = answer[0]["code"], answer[0]["error"]
            if rank != 0 and code != 0:
                print(f"error: rank 0 could not prepare the run (exit {code})"
                      f"{f': {error}' if error else ''}", file=sys.stderr)
            return code
        prepared_path = Path(answer[0]["prepared"])

        # 3. Every rank trains on what rank 0 prepared: visible and identical everywhere?
        mine = {"rank": rank, "host": host, "digest": prepared_digest(prepared_path)}
        seen = gather(mine)
        missing = [x for x in seen if x["digest"] is None]
        if missing:
            x = missing[0]
            return fail_prepared(started, args, everyone_exits(EXIT_USAGE, (
                f"rank {x['rank']} on {x['host']} cannot read {prepared_path} (rank 0 prepared it): "
                "--output_dir must be a filesystem every node shares, or run the same command with "
                "--prepare_only on every node first")), received)
        if len({x["digest"] for x in seen}) > 1:
            ref = seen[0]
            other = next(x for x in seen if x["digest"] != ref["digest"])
            return fail_prepared(started, args, everyone_exits(EXIT_USAGE, (
                f"the prepared data differ between nodes: rank {ref['rank']} on {ref['host']} has "
                f"{ref['digest']}, rank {other['rank']} on {other['host']} has {other['digest']} "
                f"(prepared.json + dataset_stats.pkl in {prepared_path.parent}); prepare once on a shared "
                "--output_dir, or with the same dataset and command on every node")), received)

        # 4. Train; SIGTERM on any node stops every rank at the same step (act.train).
        prep = PreparedRun.load(prepared_path)
        stop = StopFlag()
        stop.install()
        setup_logging(rank)
        error = None
        try:
            rc = train_rank(prep, ctx, stop)
        except Exception as e:  # noqa: BLE001 - reported in the manifest by rank 0
            traceback.print_exc()
            rc, error = 1, f"rank {rank}: {type(e).__name__}: {e}"

        # 5. Rank 0 writes the verdict, as our own launcher's parent process does.
        if rank != 0:
            return rc
        return finalize(started.manifest, prep, rc, started.conv_dir, keeps_conversion(args), error)
    except KeyboardInterrupt:
        return 128 + received.get("signum", signal.SIGINT)
    finally:
        started.release()
        shutdown_distributed()


def prepared_digest(prepared_path: Path) -> str | None:
    """sha256 over what every rank trains from (prepared.json, dataset_stats.pkl); None if unreadable."""
    digest = hashlib.sha256()
    try:
        for path in (prepared_path, prepared_path.parent / "dataset_stats.pkl"):
            digest.update(path.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()[:16]


def fail_prepared(started: StartedRun, args: argparse.Namespace, code: int, received: dict[str, int]) -> int:
    """Rank 0 records a refusal found after it prepared (the others only exit)."""
    if started.manifest is not None:
        started.manifest.set_status("failed", "the ranks do not share the prepared data; see the error")
        end_early(started.manifest, code)
    return code


def run_single(prepared_path: Path) -> tuple[int, str | None]:
    try:
        return run_worker(prepared_path), None
    except Exception as e:
        known = user_error(e)
        if known:
            print(f"error: {known[1]}", file=sys.stderr)
            return known[0], known[1]
        traceback.print_exc()
        return 1, f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    # `kill -USR1 PID` prints every thread's Python stack to stderr: where a stuck run is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.exit(main())
