"""Benchmark the LeRobot -> ACT HDF5 converter against PyAV's plain sequential decode.

Generates LeRobot v2.1 datasets the way lerobot encodes video (AV1 via libsvtav1, yuv420p,
keyframe every 2 frames, crf 30, preset 12), 640x480, one camera, then measures in one run:

1. throughput: frames/s of `convert_dataset` (1 worker, 2 workers) vs the baseline: PyAV
   decoding the same mp4 files sequentially to RGB arrays, FFmpeg's automatic threading.
   Target: ratio >= 0.8 with one worker. A second baseline also writes each RGB frame's bytes
   to a flat file: the I/O floor of any converter to raw frames (0.9 MiB per 640x480 frame).
   CPU time per frame (all threads) is printed too: on a shared machine it is the steadier figure.
2. memory: peak RSS (VmHWM) of a fresh child process converting a 1800-frame episode vs a
   180-frame one with one worker, next to a child that only imports the converter.
   Target: no growth with episode length (frames are streamed in blocks).

Each throughput figure is the best of --repeats runs (the machine may be shared).

    python scripts/bench_convert.py [--work_dir DIR] [--repeats 3] [--frames 1800]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.synthetic import write_v21_dataset

LEROBOT_AV1 = {"preset": "12", "crf": "30"}  # with gop 2: lerobot's default video encoding
HEIGHT, WIDTH = 480, 640

# VmHWM (peak resident set of this process image), not ru_maxrss: Linux carries the parent's
# high-water mark across fork+exec into the child's ru_maxrss.
MEMORY_CHILD = """
import re, sys
from lerobot_bridge.convert import convert_dataset
if sys.argv[1] != "imports-only":
    convert_dataset(sys.argv[1], sys.argv[2], idle_threshold=0, workers=1, progress=False)
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (FFmpeg's included), user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_decode(paths: list[Path], sink: Path | None = None) -> int:
    """PyAV sequential decode of whole files to RGB arrays; with `sink`, also write every
    frame's bytes to one flat file (the I/O any converter to raw frames cannot avoid)."""
    frames = 0
    fd = os.open(sink, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if sink else None
    try:
        for path in paths:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    rgb = frame.to_ndarray(format="rgb24")
                    if fd is not None:
                        os.write(fd, rgb)
                    frames += 1
    finally:
        if fd is not None:
            os.close(fd)
            sink.unlink()
    return frames


def convert_frames(root: Path, out: Path, workers: int) -> int:
    shutil.rmtree(out, ignore_errors=True)
    result = convert_dataset(root, out, idle_threshold=0, workers=workers, progress=False)
    shutil.rmtree(out, ignore_errors=True)
    return result.total_frames_out


def peak_rss_mib(args: list[str]) -> float:
    """Peak resident memory of a fresh child process, MiB."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, *args], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default=None, help="where datasets and outputs go (default: a temp dir)")
    p.add_argument(
        "--frames", type=int, default=1800, help="frames of the long episode (and of the throughput set)"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_convert_"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.frames
    cpus = len(os.sched_getaffinity(0))
    print(f"machine: {cpus} CPUs, PyAV {av.__version__}, FFmpeg {av.library_versions.get('libavcodec')}")

    t0 = time.perf_counter()
    common = dict(height=HEIGHT, width=WIDTH, encoder_options=LEROBOT_AV1)
    throughput_set = write_v21_dataset(work / "four_episodes", [n // 4] * 4, **common)
    long_set = write_v21_dataset(work / "long", [n], **common)
    short_set = write_v21_dataset(work / "short", [n // 10], **common)
    print(f"generated datasets in {time.perf_counter() - t0:.1f} s under {work}")

    mp4s = sorted((throughput_set / "videos").rglob("*.mp4"))
    candidates = {
        "pyav_plain_decode": lambda: plain_decode(mp4s),
        "decode_and_raw_write": lambda: plain_decode(mp4s, work / "raw_frames.bin"),
        "convert_1_worker": lambda: convert_frames(throughput_set, work / "out", 1),
        "convert_2_workers": lambda: convert_frames(throughput_set, work / "out", 2),
    }
    best_wall: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    frames: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved, so a busy spell hurts every candidate alike
        for name, run in candidates.items():
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            frames[name] = run()
            wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
            best_wall[name] = min(best_wall.get(name, float("inf")), wall)
            best_cpu[name] = min(best_cpu.get(name, float("inf")), cpu)
    fps = {name: frames[name] / best_wall[name] for name in candidates}
    cpu_ms = {name: 1e3 * best_cpu[name] / frames[name] for name in candidates}
    base = fps["pyav_plain_decode"]
    floor = fps["decode_and_raw_write"]
    print(
        f"\nthroughput, {len(mp4s)} episodes x {n // 4} frames {WIDTH}x{HEIGHT} AV1 (best of {args.repeats}):"
    )
    print(f"  {'':22s} {'frames/s':>9s} {'vs decode':>10s} {'vs decode+write':>16s} {'CPU ms/frame':>13s}")
    for name in candidates:
        cpu_text = f"{cpu_ms[name]:13.2f}" if not name.endswith("2_workers") else f"{'(children)':>13s}"
        print(f"  {name:22s} {fps[name]:9.1f} {fps[name] / base:10.2f} {fps[name] / floor:16.2f} {cpu_text}")
    scaling = fps["convert_2_workers"] / fps["convert_1_worker"]
    print(f"  2-worker scaling: {scaling:.2f}x over 1 worker")
    print(
        f"  CPU-time ratio (robust to a shared machine): plain decode / convert = "
        f"{cpu_ms['pyav_plain_decode'] / cpu_ms['convert_1_worker']:.2f}, "
        f"decode+write / convert = {cpu_ms['decode_and_raw_write'] / cpu_ms['convert_1_worker']:.2f}"
    )

    rss_imports = peak_rss_mib(["imports-only"])
    rss_short = peak_rss_mib([str(short_set), str(work / "out_short")])
    rss_long = peak_rss_mib([str(long_set), str(work / "out_long")])
    shutil.rmtree(work / "out_short", ignore_errors=True)
    shutil.rmtree(work / "out_long", ignore_errors=True)
    print(f"\npeak RSS of one worker (fresh process), {WIDTH}x{HEIGHT}:")
    print(f"  imports only          {rss_imports:7.1f} MiB")
    print(f"  {n // 10:5d}-frame episode    {rss_short:7.1f} MiB")
    print(f"  {n:5d}-frame episode    {rss_long:7.1f} MiB   long/short = {rss_long / rss_short:.3f}")
    print(f"  (the {n}-frame episode is {n * HEIGHT * WIDTH * 3 / 2**20:.0f} MiB of RGB frames)")

    figures = {
        "frames_per_s": fps,
        "ratio_1_worker": fps["convert_1_worker"] / base,
        "ratio_2_workers": fps["convert_2_workers"] / base,
        "scaling_2_workers": scaling,
        "peak_rss_mib": {
            "imports_only": rss_imports,
            f"{n // 10}_frames": rss_short,
            f"{n}_frames": rss_long,
        },
        "cpus": cpus,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
