"""The FastAPI application: HTML pages (Jinja2 templates + plain ES modules) and a JSON API."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import secrets
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask

from lerobot_bridge.errors import DatasetError
from manager import curation, datasets, runs, skill_curation, skills
from manager.paths import PathRefused, check_new_name, relative_to_root, resolve_inside

HERE = Path(__file__).parent
TOKEN_COOKIE = "train_act_manager_token"
log = logging.getLogger("manager")


class LogBuffer(logging.Handler):
    """The server's log as numbered lines, for the log panel (polled with ?after=N)."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__()
        self.lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=capacity)
        self.seq = 0
        self.guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "uvicorn.access":
            return  # the pages' own polling would drown everything else
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a log line must never break a request
            return
        with self.guard:
            self.seq += 1
            self.lines.append((self.seq, text))

    def after(self, seq: int) -> list[dict]:
        with self.guard:
            return [{"seq": s, "line": t} for s, t in self.lines if s > seq]


LOG_BUFFER = LogBuffer()


def install_log_buffer() -> None:
    root = logging.getLogger()
    if LOG_BUFFER not in root.handlers:
        root.addHandler(LOG_BUFFER)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def create_app(
    data_root: str | os.PathLike,
    runs_root: str | os.PathLike,
    *,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FastAPI:
    """The manager over `data_root` (datasets; curation writes new ones here) and `runs_root`
    (training outputs). token: required on every request when set (cookie, ?token= or
    `Authorization: Bearer`)."""
    data_root = Path(data_root).resolve()
    runs_root = Path(runs_root).resolve()
    if not data_root.is_dir():
        raise SystemExit(f"--data_root {data_root} is not a directory")
    runs_root.mkdir(parents=True, exist_ok=True)
    cache = datasets.EpisodeCache(Path(cache_dir) if cache_dir else runs_root / ".manager_cache")
    skill_cache = skills.SkillFrameCache(cache.cache_dir)  # the same cache dir as LeRobot episodes
    registry = runs.RunRegistry(runs_root)
    install_log_buffer()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        registry.stop_all()  # SIGTERM: the runs save a resumable state (a hard kill leaves them running)

    app = FastAPI(title="train_act Training Manager", docs_url="/api/docs", redoc_url=None, lifespan=lifespan)
    app.state.data_root, app.state.runs_root, app.state.registry, app.state.cache = (
        data_root,
        runs_root,
        registry,
        cache,
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["human_size"] = human_size
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # ------------------------------------------------------------------ auth

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        if token is None or request.url.path.startswith("/static/"):
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and secrets.compare_digest(given, token):
            query = {k: v for k, v in request.query_params.items() if k != "token"}
            url = request.url.path + (("?" + urlencode(query)) if query else "")
            response = RedirectResponse(url, status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if (cookie and secrets.compare_digest(cookie, token)) or (
            bearer and secrets.compare_digest(bearer, token)
        ):
            return await call_next(request)
        return JSONResponse(
            {"detail": "a token is required: open the URL with ?token=... printed when the manager started"},
            status_code=401,
        )

    @app.exception_handler(PathRefused)
    async def refused(_request: Request, exc: PathRefused):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(curation.CurationError)
    async def curation_refused(_request: Request, exc: curation.CurationError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(DatasetError)
    async def dataset_error(_request: Request, exc: DatasetError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    # ------------------------------------------------------------------ helpers

    def dataset_at(rel: str) -> tuple[Path, str]:
        path = resolve_inside(data_root, rel, "dataset")
        kind = datasets.is_dataset_dir(path)
        if kind is None:
            raise PathRefused(
                404, f"dataset {rel!r}: not a dataset (no meta/info.json, skill or ACT HDF5 files)"
            )
        return path, kind

    def lerobot_at(rel: str):
        path, kind = dataset_at(rel)
        if kind != "lerobot":
            raise PathRefused(
                422, f"dataset {rel!r} is a {kind} folder; episodes and curation need a LeRobot dataset"
            )
        return datasets.open_lerobot(path)

    def source_at(rel: str) -> tuple[str, object]:
        """("lerobot", LeRobotDataset) or ("innate" | "act_hdf5", skills.Skill)."""
        path, kind = dataset_at(rel)
        if kind == "lerobot":
            return kind, datasets.open_lerobot(path)
        return kind, skills.open_skill(path)

    def episode_rows_of(kind: str, ds) -> list[dict]:
        return datasets.episode_list(ds) if kind == "lerobot" else skills.episode_list(ds)

    def used_by() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for output in runs.find_outputs(runs_root):
            manifest = runs.read_json(output / "manifest.json")
            launch = runs.read_json(output / runs.LAUNCH_FILE)
            src = (manifest.get("dataset") or {}).get("path") or (manifest.get("arguments") or {}).get(
                "input_dir"
            )
            paths = {os.path.realpath(src)} if src else set()
            if launch.get("dataset"):
                paths.add(os.path.realpath(data_root / launch["dataset"]))
            for p in paths:
                out.setdefault(p, []).append(relative_to_root(runs_root, output))
        return out

    def all_cards() -> list[dict]:
        users = used_by()
        return [
            datasets.dataset_card(
                path, kind, relative_to_root(data_root, path) or ".", users.get(os.path.realpath(path), [])
            )
            for path, kind in datasets.find_datasets(data_root)
        ]

    def output_at(run_id: str) -> Path:
        path = resolve_inside(runs_root, run_id, "run")
        if not ((path / "manifest.json").is_file() or (path / runs.LAUNCH_FILE).is_file()):
            raise PathRefused(404, f"run {run_id!r}: no manifest.json there")
        return path

    def default_skill(run: dict) -> str:
        """The run's dataset when it is an Innate skill under the data root (the usual target)."""
        src = run.get("dataset")
        if not src:
            return ""
        try:
            rel = relative_to_root(data_root, Path(src))
        except ValueError:
            return ""
        return rel if datasets.is_dataset_dir(data_root / rel) == "innate" else ""

    def page(request: Request, name: str, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"request": request, **context})

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        return page(request, "datasets.html", cards=all_cards(), data_root=str(data_root))

    @app.get("/dataset", response_class=HTMLResponse)
    def dataset_page(request: Request, path: str):
        ds_path, kind = dataset_at(path)
        card = datasets.dataset_card(ds_path, kind, path, used_by().get(os.path.realpath(ds_path), []))
        try:
            episodes = episode_rows_of(*source_at(path))
        except DatasetError:
            episodes = []  # the card says why
        return page(request, "dataset.html", card=card, episodes=episodes)

    @app.get("/episode", response_class=HTMLResponse)
    def episode_page(request: Request, path: str, episode: int):
        kind, ds = source_at(path)
        if kind == "lerobot":
            try:
                ep = ds.episodes[episode] if episode >= 0 else None
            except IndexError:
                ep = None
            if ep is None:
                raise HTTPException(404, f"episode {episode} not found in {path}")
            indices = [e.index for e in ds.episodes]
            length, cameras, fps = ep.length, list(datasets.select_cameras(ds).values()), ds.fps
        else:
            if episode not in ds.by_index:
                raise HTTPException(404, f"episode {episode} not found in {path}")
            indices = sorted(ds.by_index)
            length, cameras, fps = ds.by_index[episode].length or 0, ds.camera_names(), ds.fps
        at = indices.index(episode)
        return page(
            request,
            "episode.html",
            path=path,
            episode=episode,
            length=length,
            cameras=cameras,
            fps=fps,
            n_episodes=len(indices),
            prev_episode=indices[at - 1] if at > 0 else None,
            next_episode=indices[at + 1] if at + 1 < len(indices) else None,
        )

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request):
        return page(request, "runs.html", runs=api_runs()["runs"], runs_root=str(runs_root))

    @app.get("/run", response_class=HTMLResponse)
    def run_page(request: Request, id: str):  # noqa: A002
        output = output_at(id)
        run = registry.detail(output, id)
        return page(request, "run.html", run=run, default_skill=default_skill(run))

    @app.get("/runs/new", response_class=HTMLResponse)
    def new_run_page(request: Request, dataset: str = ""):
        if dataset:
            dataset_at(dataset)
        groups: dict[str, list[dict]] = {}
        for spec in runs.form_spec():
            groups.setdefault(spec["group"], []).append(spec)
        return page(
            request, "new_run.html", dataset=dataset, groups=groups, datasets=[c["path"] for c in all_cards()]
        )

    # ------------------------------------------------------------------ API: datasets

    @app.get("/api/datasets")
    def api_datasets():
        t0 = time.perf_counter()
        cards = all_cards()
        return {"data_root": str(data_root), "datasets": cards, "seconds": round(time.perf_counter() - t0, 3)}

    @app.get("/api/dataset")
    def api_dataset(path: str):
        ds_path, kind = dataset_at(path)
        card = datasets.dataset_card(ds_path, kind, path, used_by().get(os.path.realpath(ds_path), []))
        try:
            episodes = episode_rows_of(*source_at(path))
        except DatasetError:
            episodes = []  # the card says why
        return {"card": card, "episodes": episodes}

    @app.get("/api/dataset/flags")
    def api_flags(path: str, start: int = 0, count: int = 50, chunk_size: int = datasets.DEFAULT_CHUNK):
        kind, ds = source_at(path)
        count = max(0, min(count, 500))
        if kind != "lerobot":
            chosen = ds.episodes[max(0, start) : max(0, start) + count]
            return {"flags": [skills.episode_flags(ds, e.index, chunk_size) for e in chosen]}
        indices = range(max(0, start), min(len(ds.episodes), max(0, start) + count))
        return {"flags": [datasets.episode_flags(ds, i, chunk_size, cache) for i in indices]}

    @app.get("/api/dataset/episode")
    def api_episode(path: str, episode: int, chunk_size: int = datasets.DEFAULT_CHUNK):
        kind, ds = source_at(path)
        if kind != "lerobot":
            return skill_episode(ds, episode, chunk_size)
        try:
            flags = datasets.episode_flags(ds, episode, chunk_size, cache)
        except IndexError as err:
            raise HTTPException(404, str(err)) from None
        data: dict = {
            "flags": flags,
            "fps": ds.fps,
            "cameras": list(datasets.select_cameras(ds).values()),
            "state_names": ds.feature_names("observation.state"),
            "action_names": ds.feature_names("action"),
        }
        if flags.get("error") is None:
            rows = datasets.episode_rows(ds, episode)
            data.update(
                timestamp=rows.timestamp.tolist(), state=rows.state.tolist(), action=rows.action.tolist()
            )
        return data

    def skill_episode(skill: skills.Skill, episode: int, chunk_size: int) -> dict:
        try:
            flags = skills.episode_flags(skill, episode, chunk_size)
        except IndexError as err:
            raise HTTPException(404, str(err)) from None
        data: dict = {
            "flags": flags,
            "fps": skill.fps,
            "cameras": skill.camera_names(),
            "state_names": None,
            "action_names": skills.action_names(skill),
            "kind": skill.kind,
        }
        if flags.get("error") is None:
            qpos, action = skills.episode_rows(skill, episode)
            data.update(
                timestamp=(np.arange(len(qpos)) / skill.fps).tolist(),
                state=qpos.tolist(),
                action=action.tolist(),
            )
        return data

    @app.get("/api/dataset/frame")
    def api_frame(path: str, episode: int, camera: str, t: int):
        kind, ds = source_at(path)
        try:
            if kind == "lerobot":
                img = cache.frame(ds, episode, camera, t)
            else:
                img = skill_cache.frame(ds, episode, camera, t)
        except (IndexError, KeyError) as err:
            raise HTTPException(404, str(err).strip("'\"")) from None
        return Response(
            datasets.encode_png(img),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.post("/api/dataset/delete_episodes", status_code=201)
    def api_delete_episodes(body: dict):
        kind, ds = source_at(str(body.get("path", "")))
        if kind != "lerobot":
            return skill_delete(body, ds)
        drop = curation.check_selection(ds, list(body.get("episodes") or []))
        if not drop:
            raise curation.CurationError(422, "no episodes selected to delete")
        keep = [e.index for e in ds.episodes if e.index not in set(drop)]
        target = new_target(body.get("target"))
        result = curation.write_new_dataset(target, [curation.Selection(ds, keep)], cache)
        log.info("deleted episodes %s of %s into new dataset %s", drop, body.get("path"), body.get("target"))
        return {"path": relative_to_root(data_root, target), "deleted": drop, **result}

    def skill_delete(body: dict, skill: skills.Skill) -> dict:
        drop = skill_curation.check_selection(skill, list(body.get("episodes") or []))
        if not drop:
            raise curation.CurationError(422, "no episodes selected to delete")
        keep = [e.index for e in skill.episodes if e.index not in set(drop)]
        if not keep:
            raise curation.CurationError(422, "every episode is selected: the new skill would be empty")
        target = new_target(body.get("target"))
        result = skill_curation.write_new_skill(
            target, [skill_curation.SkillSelection(skill, keep)], [str(body.get("path"))]
        )
        log.info("deleted episodes %s of %s into new skill %s", drop, body.get("path"), body.get("target"))
        return {"path": relative_to_root(data_root, target), "deleted": drop, **result}

    @app.post("/api/dataset/edit_tasks", status_code=201)
    def api_edit_tasks(body: dict):
        kind, _ds = source_at(str(body.get("path", "")))
        if kind != "lerobot":
            raise curation.CurationError(
                422,
                f"dataset {body.get('path')!r} is a {kind} folder: it has no per-episode task text; edit "
                "the skill's metadata.json (name, guidelines) with POST /api/skill/metadata",
            )
        ds = lerobot_at(str(body.get("path", "")))
        task = str(body.get("task") or "").strip()
        if not task:
            raise curation.CurationError(422, "the new task text is empty")
        selected = body.get("episodes")
        indices = curation.check_selection(ds, list(selected)) if selected else [e.index for e in ds.episodes]
        target = new_target(body.get("target"))
        result = curation.write_new_dataset(
            target,
            [curation.Selection(ds, [e.index for e in ds.episodes], {i: task for i in indices})],
            cache,
        )
        return {"path": relative_to_root(data_root, target), "edited": indices, **result}

    @app.post("/api/merge", status_code=201)
    def api_merge(body: dict):
        sources = body.get("sources") or []
        if len(sources) < 2:
            raise curation.CurationError(422, "merge needs at least two datasets")
        opened = [(str(src.get("path", "")), *source_at(str(src.get("path", "")))) for src in sources]
        kinds = {kind for _p, kind, _ds in opened}
        if "lerobot" in kinds and len(kinds) > 1:
            listing = ", ".join(f"{p} ({kind})" for p, kind, _ds in opened)
            raise curation.CurationError(
                422, f"datasets are not compatible: LeRobot datasets and skills cannot be merged ({listing})"
            )
        if kinds != {"lerobot"}:
            return skill_merge(sources, opened, body.get("target"))
        selections = []
        for src in sources:
            ds = lerobot_at(str(src.get("path", "")))
            chosen = src.get("episodes")
            indices = curation.check_selection(ds, list(chosen)) if chosen else [e.index for e in ds.episodes]
            selections.append(curation.Selection(ds, indices))
        problems = curation.compatibility_problems([s.dataset for s in selections])
        if problems:
            raise curation.CurationError(422, "datasets are not compatible: " + "; ".join(problems))
        target = new_target(body.get("target"))
        result = curation.write_new_dataset(target, selections, cache)
        return {"path": relative_to_root(data_root, target), **result}

    def skill_merge(sources: list, opened: list, target_name) -> dict:
        selections = []
        for src, (_p, _kind, skill) in zip(sources, opened, strict=True):
            chosen = src.get("episodes")
            indices = (
                skill_curation.check_selection(skill, list(chosen)) if chosen else sorted(skill.by_index)
            )
            selections.append(skill_curation.SkillSelection(skill, indices))
        problems = skill_curation.compatibility_problems([s.skill for s in selections])
        if problems:
            raise curation.CurationError(422, "skills are not compatible: " + "; ".join(problems))
        target = new_target(target_name)
        result = skill_curation.write_new_skill(target, selections, [p for p, _k, _s in opened])
        return {"path": relative_to_root(data_root, target), **result}

    @app.post("/api/skill/metadata", status_code=201)
    def api_skill_metadata(body: dict):
        """Edit metadata.json (name, guidelines, execution fields) into a NEW copy of the skill."""
        rel = str(body.get("path", ""))
        kind, skill = source_at(rel)
        if kind != "innate":
            raise curation.CurationError(
                422, f"dataset {rel!r} is a {kind} folder; metadata.json belongs to Innate skills"
            )
        changes = {k: body[k] for k in ("name", "guidelines", "execution") if k in body}
        skill_curation.edited_metadata(
            skill.skill_meta or {"name": skill.root.name, "type": "learned", "guidelines": ""}, changes
        )  # refuse bad values before the target is checked
        target = new_target(body.get("target"))
        result = skill_curation.write_edited_skill(skill, target, changes, rel)
        return {"path": relative_to_root(data_root, target), **result}

    def new_target(name) -> Path:
        name = str(name or "").strip()
        if not runs.NAME_RE.match(name.split("/")[-1] or "-"):
            raise PathRefused(422, f"target name {name!r}: use letters, digits, '.', '_' or '-'")
        target = check_new_name(data_root, name, "target dataset")
        curation.writable_parent(target)
        return target

    # ------------------------------------------------------------------ API: runs

    @app.get("/api/runs")
    def api_runs():
        return {
            "runs_root": str(runs_root),
            "runs": [
                registry.summary(o, relative_to_root(runs_root, o)) for o in runs.find_outputs(runs_root)
            ],
        }

    @app.get("/api/run")
    def api_run(id: str):  # noqa: A002
        return registry.detail(output_at(id), id)

    @app.get("/api/run/metrics")
    def api_run_metrics(id: str, after: int = 0):  # noqa: A002
        output = output_at(id)
        run_dir = runs.run_dir_of(output, runs.read_json(output / "manifest.json"))
        rows = runs.read_metrics(run_dir / "metrics.jsonl") if run_dir else []
        return {"rows": rows[max(0, after) :], "total": len(rows), "summary": registry.summary(output, id)}

    @app.get("/api/run/log")
    def api_run_log(id: str, offset: int = 0):  # noqa: A002
        path = output_at(id) / runs.LOG_FILE
        if not path.is_file():
            return {"text": "", "offset": 0}
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            offset = max(0, min(offset, size))
            if size - offset > 256_000:
                offset = size - 256_000
            fh.seek(offset)
            data = fh.read()
        return {"text": data.decode(errors="replace"), "offset": offset + len(data)}

    @app.get("/api/train_flags")
    def api_train_flags():
        return {"flags": runs.form_spec()}

    @app.post("/api/runs", status_code=201)
    def api_create_run(body: dict):
        ds_path, _kind = dataset_at(str(body.get("dataset", "")))
        name = str(body.get("name") or "").strip()
        if not name:
            name = f"{ds_path.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not runs.NAME_RE.match(name):
            raise PathRefused(422, f"run name {name!r}: use letters, digits, '.', '_' or '-' (no '/')")
        output = check_new_name(runs_root, name, "run")
        try:
            flags = runs.flags_to_argv(body.get("flags") or {})
        except runs.FormError as err:
            raise HTTPException(422, str(err)) from None
        argv = runs.build_argv(ds_path, output, flags)
        registry.launch(output, argv, relative_to_root(data_root, ds_path))
        return {"id": name, "argv": argv}

    @app.post("/api/run/stop")
    def api_run_stop(id: str):  # noqa: A002
        try:
            pid = registry.stop(output_at(id))
        except RuntimeError as err:
            raise HTTPException(409, str(err)) from None
        return {"stopped": True, "pid": pid}

    @app.post("/api/run/resume")
    def api_run_resume(id: str):  # noqa: A002
        try:
            proc = registry.resume(output_at(id))
        except RuntimeError as err:
            raise HTTPException(409, str(err)) from None
        except FileNotFoundError as err:
            raise HTTPException(422, str(err)) from None
        return {"resumed": True, "pid": proc.pid}

    @app.get("/api/run/download")
    def api_run_download(id: str):  # noqa: A002
        output = output_at(id)
        run_dir = runs.run_dir_of(output, runs.read_json(output / "manifest.json"))
        if run_dir is None:
            raise HTTPException(404, f"run {id!r} has no checkpoints yet")
        tmp = runs_root / ".manager_cache" / f"download-{secrets.token_hex(6)}.zip"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(run_dir.iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    zf.write(p, f"{run_dir.name}/{p.name}")
            if (output / "manifest.json").is_file():
                zf.write(output / "manifest.json", f"{run_dir.name}/manifest.json")
        return FileResponse(
            tmp,
            media_type="application/zip",
            filename=f"{re.sub(r'[^A-Za-z0-9._-]', '_', id)}.zip",
            background=BackgroundTask(tmp.unlink, missing_ok=True),
        )

    @app.post("/api/run/export_innate")
    def api_run_export_innate(body: dict):
        """Export a completed run into an Innate skill under the data root (scripts/export_innate.py)."""
        run_id = str(body.get("id", ""))
        output = output_at(run_id)
        summary = registry.summary(output, run_id)
        if summary["alive"] or summary["status"] != "completed":
            raise HTTPException(
                409, f"run {run_id!r} is {summary['status']}; only a completed run can be exported"
            )
        run_dir = runs.run_dir_of(output, runs.read_json(output / "manifest.json"))
        if run_dir is None:
            raise HTTPException(409, f"run {run_id!r} has no run directory (checkpoints) yet")
        checkpoint = str(body.get("checkpoint") or "policy_best.ckpt")
        available = sorted(p.name for p in run_dir.glob("*.ckpt"))
        if not runs.CKPT_RE.match(checkpoint) or checkpoint not in available:
            raise HTTPException(422, f"checkpoint {checkpoint!r} not in the run; it has {available}")
        skill_rel = str(body.get("skill") or "").strip().rstrip("/")
        if not skill_rel or skill_rel == ".":
            raise PathRefused(422, "skill: name the skill directory under the data root")
        skill_dir = resolve_inside(data_root, skill_rel, "skill", must_exist=False)
        if skill_dir.exists():
            kind = datasets.is_dataset_dir(skill_dir) if skill_dir.is_dir() else None
            empty = skill_dir.is_dir() and not any(skill_dir.iterdir())
            if kind != "innate" and not empty:
                what = f"a {kind} folder" if kind else "not an Innate skill (no metadata.json + episodes)"
                raise PathRefused(
                    422, f"skill {skill_rel!r} is {what}; export into an Innate skill or a new folder"
                )
        else:
            if not runs.NAME_RE.match(skill_dir.name):
                raise PathRefused(422, f"skill name {skill_dir.name!r}: use letters, digits, '.', '_' or '-'")
            curation.writable_parent(skill_dir)
        if skill_dir.exists() and not os.access(skill_dir, os.W_OK):
            raise curation.CurationError(403, f"{skill_rel} is not writable by the manager")
        outcome = runs.export_innate(run_dir, skill_dir, checkpoint, bool(body.get("skip_runtime_check")))
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "skill": skill_rel,
            "checkpoint": checkpoint,
            "skip_runtime_check": bool(body.get("skip_runtime_check")),
            "returncode": outcome["returncode"],
            "error": outcome["error"],
            "warnings": outcome["warnings"],
            "result": outcome["result"],
        }
        runs.record_export(output, record)
        if outcome["returncode"] != 0:
            log.warning("export of run %s into %s refused: %s", run_id, skill_rel, outcome["error"])
            status = 422 if outcome["returncode"] == 2 else 500
            raise HTTPException(status, f"export refused: {outcome['error']}")
        result = outcome["result"] or {}
        files = [
            relative_to_root(data_root, Path(result[k]))
            for k in ("weights", "stats", "metadata", "metadata_backup", "export_info")
            if result.get(k)
        ]
        log.info("exported run %s into skill %s: %s", run_id, skill_rel, files)
        return {"skill": skill_rel, "files": files, "result": result, "warnings": outcome["warnings"]}

    # ------------------------------------------------------------------ API: server log

    @app.get("/api/log")
    def api_log(after: int = 0):
        return {"lines": LOG_BUFFER.after(after)}

    return app
