"""The Training Manager in a real headless browser (Debian's chromium driven by Playwright).

Starts the real server (uvicorn on a free 127.0.0.1 port) over a temporary data root holding a
fixture, then, as a user would: opens the app and the dataset, moves the time slider and reads the
frame code back from the pixels the page shows, plays the episode, deletes one episode into a new
dataset and checks that it converts through the bridge exactly like the source's other episodes,
starts a tiny training run (the real CLI), sees its progress and loss curve update, stops it
(SIGTERM, resumable) and resumes it to completion.

Needs /usr/bin/chromium and playwright: `bash scripts/install_browser.sh`. Missing either is a
FAILURE, not a skip. MANAGER_SCREENSHOTS=1 saves the screenshots into docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.synthetic import read_frame_code

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "lerobot" / "so100_v30_video"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "docs" / "screenshots"
INSTALL_HINT = "run `bash scripts/install_browser.sh` (Debian chromium + playwright==1.65.2)"
# The tiny run: a few CPU seconds per step (README's tiny flags; 5 epochs so a stop lands mid-run).
TINY = {
    "num_epochs": "5",
    "batch_size": "4",
    "chunk_size": "10",
    "hidden_dim": "64",
    "dim_feedforward": "128",
    "enc_layers": "1",
    "dec_layers": "1",
    "nheads": "2",
    "backbone_weights": "none",
    "gpus": "cpu",
    "val_interval": "1",
    "val_samples": "8",
}

pytestmark = pytest.mark.slow


def _playwright():
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium; {INSTALL_HINT}", pytrace=False
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed; {INSTALL_HINT}", pytrace=False)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path: Path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    shutil.copytree(FIXTURE, data / "so100_v30_video")
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "manager",
            "--data_root",
            str(data),
            "--runs_root",
            str(runs),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/api/log", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "server did not start: " + (tmp_path / "server.log").read_text()
                ) from None
            time.sleep(0.3)
    yield base, data, runs
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _shot(page, name: str) -> None:
    if os.environ.get("MANAGER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


READ_PIXELS = """(img) => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  return {w: c.width, h: c.height, data: Array.from(ctx.getImageData(0, 0, c.width, c.height).data)};
}"""


def _shown_frame(page, camera: str) -> np.ndarray:
    px = page.locator(f"img.frame[data-camera={camera}]").evaluate(READ_PIXELS)
    return np.array(px["data"], np.uint8).reshape(px["h"], px["w"], 4)[..., :3]


def _move_slider(page, t: int) -> None:
    page.locator("#slider").evaluate(
        "(el, t) => { el.value = String(t); el.dispatchEvent(new Event('input', {bubbles: true})); }", t
    )
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('img.frame')].every("
        "i => i.dataset.step === String(t) && i.complete && i.naturalWidth > 0)",
        arg=t,
        timeout=60_000,
    )


def _converted(root: Path, out: Path) -> list[dict]:
    result = convert_dataset(root, out, idle_threshold=0, workers=1, progress=False)
    episodes = []
    for path in result.hdf5_paths:
        with h5py.File(path, "r") as f:
            episodes.append(
                {
                    "qpos": f["observations/qpos"][:],
                    "action": f["action"][:],
                    "images": {c: f[f"observations/images/{c}"][:] for c in result.camera_names},
                }
            )
    return episodes


def test_manager_in_a_real_browser(server, tmp_path: Path) -> None:
    sync_playwright = _playwright()
    base, data, runs = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # --- the app and the dataset
        page.goto(base + "/")
        card = page.locator('a.card[data-dataset="so100_v30_video"]')
        assert "v3.0" in card.inner_text() and "275" in card.inner_text()
        _shot(page, "datasets")
        card.click()
        page.wait_for_selector("#episodes[data-flags-loaded='1']", timeout=60_000)
        row = page.locator('tr[data-episode="2"]')
        assert "idle start 4" in row.inner_text() and "idle end 6" in row.inner_text()
        assert "shorter than chunk 100" in row.inner_text()
        _shot(page, "dataset")

        # --- an episode: the slider shows the frame the trainer gets at t
        row.locator("a.open-episode").click()
        page.wait_for_selector("#flags:not(:empty)", timeout=60_000)
        for t in (0, 17, 31):
            _move_slider(page, t)
            for camera in ("front", "wrist"):
                assert read_frame_code(_shown_frame(page, camera)) == (t, 2), (camera, t)
            assert page.locator("#step").inner_text() == str(t)
        page.click("#play")
        page.wait_for_function("() => Number(document.getElementById('slider').value) >= 36", timeout=60_000)
        page.click("#play")
        t = int(page.locator("#slider").input_value())
        page.wait_for_function(
            "(t) => [...document.querySelectorAll('img.frame')]"
            ".every(i => i.dataset.step === String(t) && i.complete)",
            arg=t,
            timeout=60_000,
        )
        assert read_frame_code(_shown_frame(page, "front")) == (t, 2)
        _move_slider(page, 20)
        _shot(page, "episode")

        # --- delete episode 1 into a new dataset
        page.goto(base + "/dataset?path=so100_v30_video")
        page.check('tr[data-episode="1"] input.sel')
        page.fill("#delete-target", "so100_without_ep1")
        page.click("#delete-button")
        page.wait_for_selector("#new-dataset-link", timeout=120_000)
        src = _converted(data / "so100_v30_video", tmp_path / "src")
        new = _converted(data / "so100_without_ep1", tmp_path / "new")
        assert len(new) == 4
        for new_i, old_i in enumerate((0, 2, 3, 4)):
            assert np.array_equal(new[new_i]["qpos"], src[old_i]["qpos"])
            assert np.array_equal(new[new_i]["action"], src[old_i]["action"])
            for cam, frames in src[old_i]["images"].items():
                got = new[new_i]["images"][cam]
                assert got.shape == frames.shape
                assert [read_frame_code(img) for img in got] == [(t, old_i) for t in range(len(frames))]
                assert np.abs(got.astype(int) - frames.astype(int)).mean() < 2.0  # H.264 crf 0 re-encode
        page.click("#new-dataset-link")
        page.wait_for_selector('tr[data-episode="3"]')
        assert page.locator("#episodes tbody tr").count() == 4

        # --- a tiny run: progress, loss curve, stop, resume to completion
        page.goto(base + "/runs/new?dataset=so100_v30_video")
        page.select_option("#preset", "tiny")
        for name, value in TINY.items():
            field = page.locator(f'fieldset [name="{name}"]')
            if field.evaluate("el => el.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
        page.fill("#run-name", "tiny")
        page.click("#start-run")
        page.wait_for_url("**/run?id=tiny", timeout=30_000)
        page.wait_for_function(
            "() => Number(document.getElementById('run').dataset.steps || 0) >= 1", timeout=300_000
        )
        points = int(page.locator("#run").get_attribute("data-points"))
        assert points >= 1 and "%" in page.locator("#progress-text").inner_text()
        page.click("#stop")
        page.wait_for_function(
            "() => document.getElementById('run').dataset.status === 'interrupted'", timeout=120_000
        )
        stopped_at = int(page.locator("#run").get_attribute("data-steps"))
        assert 1 <= stopped_at < 5
        page.wait_for_function("() => !document.getElementById('resume').disabled", timeout=30_000)
        page.click("#resume")
        page.wait_for_function(
            "() => document.getElementById('run').dataset.status === 'completed'", timeout=400_000
        )
        assert page.locator("#run").get_attribute("data-steps") == "5"
        assert int(page.locator("#run").get_attribute("data-points")) > points  # the curve grew
        assert "100%" in page.locator("#progress-text").inner_text()
        log_text = page.locator("#run-log").inner_text()
        assert "SIGTERM" in log_text and "resum" in log_text.lower()
        page.wait_for_timeout(1500)
        _shot(page, "run")
        page.click("#logpanel summary")
        assert page.locator("#log-lines").inner_text().strip()
        assert not errors, errors
        browser.close()
