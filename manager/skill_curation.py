"""Curation of Innate skills (and plain ACT HDF5 folders), always into a NEW folder.

Written in the source's own format, so the bridge's `convert_innate` reads it back like the
source: episode files are copied byte for byte (nothing is decoded or re-encoded), re-indexed
`data/episode_0.h5`, `episode_1.h5`, ... in the order asked for, with `data/dataset_metadata.json`
(the first source's, its `episodes` list rewritten: each kept entry with its new `episode_id` and
`file_name`, so failure marks travel with their episode; `number_of_episodes` updated) and the
skill's `metadata.json`. A plain ACT HDF5 folder stays one: `episode_0.hdf5`, ... and no
metadata (an Innate skill's recorder layout is read as BGR, a plain folder's as RGB, so the kind
must not change). The folder is assembled under a temporary name next to the target and renamed
when complete; the source is never touched and an existing target is refused (409).

metadata.json of a new skill from delete / merge: the first source's, `name` set to the new
folder's name, and its `execution` block dropped (it names a policy trained on other data, whose
files are not copied; export a run trained on the new skill). Editing metadata.json copies the
whole skill (recordings and exported policies, so `execution.checkpoint` still resolves) into a
new folder and writes the edited file there; `execution` is checked with the exporter's rules
(innate-os `config_validation.LearnedExecCfg`, `act.export_innate._validate_execution`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from manager.curation import CurationError
from manager.skills import Skill

log = logging.getLogger("manager.skill_curation")

PROVENANCE_FILE = "manager_curation.json"
EXECUTION_KEYS = {
    "model_type": str,
    "checkpoint": str,
    "stats_file": str,
    "action_dim": int,
    "duration": float,
    "start_pose": list,
    "end_pose": list,
    "progress_threshold": float,
}
EXECUTION_REQUIRED = ("checkpoint", "action_dim", "duration")  # LearnedExecCfg's required fields


@dataclass
class SkillSelection:
    skill: Skill
    episodes: list[int]  # source indices, in the order they go into the new folder


def check_selection(skill: Skill, episodes: list) -> list[int]:
    have = sorted(skill.by_index)
    bad = [i for i in episodes if not isinstance(i, int) or isinstance(i, bool) or i not in skill.by_index]
    if bad:
        raise CurationError(422, f"episodes {bad} not found in {skill.root.name} (it has episodes {have})")
    if len(set(episodes)) != len(episodes):
        raise CurationError(422, f"an episode is listed more than once: {episodes}")
    return list(episodes)


def signature(skill: Skill) -> dict:
    """What two skills must share to be merged (from the first episode the importer reads)."""
    first = skill.first
    return {
        "kind": skill.kind,
        "layout": first.layout if first else None,
        "cameras": skill.camera_names(),
        "sizes": skill.camera_sizes(),
        "state_dim": first.state_dim if first else None,
        "action_dim": first.action_dim if first else None,
        "extra": skill.extra_found,
        "fps": skill.fps,
    }


def compatibility_problems(skills: list[Skill]) -> list[str]:
    """Every difference that keeps these from being one skill ([] when they can be merged)."""
    first = skills[0]
    a = signature(first)
    problems = []
    for skill in skills[1:]:
        b = signature(skill)
        name = f"{skill.root.name} vs {first.root.name}"
        if b["kind"] != a["kind"]:
            problems.append(
                f"{name}: kind {b['kind']} vs {a['kind']} (the importer reads their frames in different "
                "channel orders)"
            )
        if b["layout"] != a["layout"]:
            problems.append(f"{name}: episode layout {b['layout']} vs {a['layout']}")
        if b["cameras"] != a["cameras"]:
            problems.append(f"{name}: cameras {b['cameras']} vs {a['cameras']}")
        for cam in [c for c in a["cameras"] if c in b["sizes"]]:
            if b["sizes"][cam] != a["sizes"][cam]:
                (h1, w1), (h0, w0) = b["sizes"][cam], a["sizes"][cam]
                problems.append(f"{name}: camera '{cam}' frame size {h1}x{w1} vs {h0}x{w0}")
        if b["state_dim"] != a["state_dim"]:
            problems.append(f"{name}: state (qpos) size {b['state_dim']} vs {a['state_dim']}")
        if b["action_dim"] != a["action_dim"]:
            problems.append(f"{name}: action size {b['action_dim']} vs {a['action_dim']}")
        elif b["extra"] != a["extra"]:
            problems.append(
                f"{name}: trailing progress/termination action columns "
                f"{'present' if b['extra'] else 'absent'} vs {'present' if a['extra'] else 'absent'}"
            )
        if b["fps"] != a["fps"]:
            problems.append(f"{name}: fps (data_frequency) {b['fps']:g} vs {a['fps']:g}")
    return problems


def _meta_entry(skill: Skill, index: int) -> dict | None:
    """The episode's entry in the source's dataset_metadata.json (by file name, else episode_id)."""
    entries = [e for e in skill.meta.get("episodes", []) if isinstance(e, dict)]
    name = skill.by_index[index].path.name
    for e in entries:
        if str(e.get("file_name", "")) == name:
            return e
    for e in entries:
        if e.get("episode_id") == index and not e.get("file_name"):
            return e
    return None


def _assemble(target: Path) -> Path:
    if target.exists() or target.is_symlink():
        raise CurationError(409, f"{target.name} already exists; nothing is overwritten, pick a new name")
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
        raise CurationError(409, f"{target.name} already exists; nothing is overwritten, pick a new name")
    os.rename(tmp, target)


def write_new_skill(target: Path, selections: list[SkillSelection], provenance_paths: list[str]) -> dict:
    """Copy the selected episodes of one or more compatible skills into a NEW skill / ACT folder."""
    skills = [s.skill for s in selections]
    problems = compatibility_problems(skills)
    if problems:
        raise CurationError(422, "skills are not compatible: " + "; ".join(problems))
    chosen = [(s.skill, i) for s in selections for i in s.episodes]
    if not chosen:
        raise CurationError(422, "no episodes selected: the new skill would be empty")
    refused = [
        f"{skill.root.name} episode {i}: {skill.by_index[i].error}"
        for skill, i in chosen
        if skill.by_index[i].source is None and not skill.by_index[i].failed
    ]
    if refused:
        raise CurationError(
            422,
            "kept episodes the bridge refuses (delete them too, or fix them): " + "; ".join(refused),
        )
    if all(skill.by_index[i].failed for skill, i in chosen):
        raise CurationError(
            422, "every kept episode is marked failed: the new skill would have nothing to train on"
        )
    first = skills[0]
    innate = first.kind == "innate"
    tmp = _assemble(target)
    try:
        folder = tmp / "data" if innate else tmp
        folder.mkdir(parents=True, exist_ok=True)
        entries, provenance = [], []
        for new, (skill, index) in enumerate(chosen):
            src = skill.by_index[index]
            name = f"episode_{new}.h5" if innate else f"episode_{new}.hdf5"
            shutil.copy2(src.path, folder / name)
            entry = dict(_meta_entry(skill, index) or {})
            if src.failed and not entry:
                entry = {"outcome": "failure"}
            entry.update(episode_id=new, file_name=name)
            entries.append(entry)
            provenance.append(
                {
                    "skill": provenance_paths[skills.index(skill)],
                    "episode": index,
                    "file": src.path.name,
                    "failed": src.failed,
                }
            )
        notes = []
        if innate:
            meta = {k: v for k, v in first.meta.items() if k not in ("episodes", "number_of_episodes")}
            recorded = next((s.meta["data_frequency"] for s in skills if s.meta.get("data_frequency")), None)
            if recorded and "data_frequency" not in meta:
                meta["data_frequency"] = recorded
            meta.setdefault("dataset_type", "h5")
            meta["number_of_episodes"] = len(entries)
            meta["episodes"] = entries
            (tmp / "data" / "dataset_metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
            skill_meta = dict(first.skill_meta or {"type": "learned", "guidelines": ""})
            skill_meta["name"] = target.name
            if "execution" in skill_meta:
                skill_meta.pop("execution")
                notes.append(
                    "metadata.json: the execution block was dropped (its policy was trained on the source "
                    "skill and its files are not copied); export a run trained on this skill"
                )
            (tmp / "metadata.json").write_text(json.dumps(skill_meta, indent=2) + "\n")
        _write_provenance(tmp, "episodes", provenance)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %s: %d episodes from %s", target, len(entries), sorted(set(provenance_paths)))
    return {"episodes": len(entries), "provenance": provenance, "notes": notes, "kind": first.kind}


def _write_provenance(folder: Path, what: str, detail) -> None:
    record = {
        "written_by": "train_act Training Manager",
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        what: detail,
    }
    (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# metadata.json


def _number(value, what: str, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                raise CurationError(422, f"{what}: {value!r} is not a number") from None
        else:
            raise CurationError(422, f"{what}: {value!r} is not a number")
    if integer and (not float(value).is_integer()):
        raise CurationError(422, f"{what}: {value!r} is not an integer")
    if not math.isfinite(float(value)):
        raise CurationError(422, f"{what}: {value!r} is not finite")
    return int(value) if integer else float(value)


def _pose(value, what: str) -> list[float]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, list):
        raise CurationError(422, f"{what}: expected a list of 6 numbers (or empty), got {value!r}")
    pose = [_number(v, what) for v in value]
    if pose and len(pose) != 6:
        raise CurationError(422, f"{what}: expected 6 numbers (or none), got {len(pose)}")
    return pose


def edited_metadata(current: dict, changes: dict) -> tuple[dict, dict]:
    """(new metadata, {field: [old, new]}) from `changes` (name, guidelines, execution: {key: value,
    null removes it}); CurationError (422) naming every bad field."""
    meta = json.loads(json.dumps(current))  # a deep copy
    changed: dict = {}
    unknown = sorted(set(changes) - {"name", "guidelines", "execution"})
    if unknown:
        raise CurationError(422, f"unknown metadata fields {unknown}: only name, guidelines, execution")
    if "name" in changes and changes["name"] is not None:
        name = str(changes["name"]).strip()
        if not name:
            raise CurationError(422, "name: the skill's name may not be empty")
        if name != meta.get("name"):
            changed["name"] = [meta.get("name"), name]
            meta["name"] = name
    if "guidelines" in changes and changes["guidelines"] is not None:
        text = str(changes["guidelines"])
        if text != meta.get("guidelines"):
            changed["guidelines"] = [meta.get("guidelines"), text]
            meta["guidelines"] = text
    execution_changes = changes.get("execution")
    if execution_changes:
        if not isinstance(execution_changes, dict):
            raise CurationError(422, "execution: expected an object of fields to set")
        bad = sorted(set(execution_changes) - set(EXECUTION_KEYS))
        if bad:
            raise CurationError(422, f"execution: unknown fields {bad}; editable: {sorted(EXECUTION_KEYS)}")
        execution = dict(meta.get("execution") or {})
        for key, value in execution_changes.items():
            kind = EXECUTION_KEYS[key]
            if value is None:
                new = None
            elif kind is str:
                new = str(value).strip()
                if not new:
                    raise CurationError(422, f"execution.{key}: may not be empty (send null to remove it)")
                if key in ("checkpoint", "stats_file") and (new.startswith("/") or ".." in Path(new).parts):
                    raise CurationError(
                        422, f"execution.{key}: {new!r} must be a path relative to the skill, without '..'"
                    )
            elif kind is int:
                new = _number(value, f"execution.{key}", integer=True)
            elif kind is float:
                new = _number(value, f"execution.{key}")
            else:
                new = _pose(value, f"execution.{key}")
            if new != execution.get(key):
                changed[f"execution.{key}"] = [execution.get(key), new]
                if new is None:
                    execution.pop(key, None)
                else:
                    execution[key] = new
        if "progress_threshold" in execution and not 0 <= execution["progress_threshold"] <= 1:
            raise CurationError(
                422, f"execution.progress_threshold: {execution['progress_threshold']} is not in 0..1"
            )
        meta["execution"] = execution
    if not changed:
        raise CurationError(422, "nothing to change: the values given are the skill's current ones")
    return meta, changed


def check_execution(execution: dict, skill_dir: Path) -> None:
    """The runtime's checks (the exporter's `_validate_execution`), plus its required fields."""
    if not execution:
        return
    missing = [k for k in EXECUTION_REQUIRED if k not in execution]
    if missing:
        raise CurationError(
            422, f"execution: missing {missing}; Innate's runtime needs checkpoint, action_dim and duration"
        )
    from act.export_innate import ExportError, _validate_execution

    try:
        _validate_execution(execution, skill_dir)
    except ExportError as err:
        raise CurationError(422, str(err).replace(str(skill_dir) + "/", "")) from None


def write_edited_skill(source: Skill, target: Path, changes: dict, source_rel: str) -> dict:
    """Copy the whole skill into `target` and write its edited metadata.json there."""
    if source.kind != "innate":
        raise CurationError(
            422, f"{source.root.name} is a plain ACT HDF5 folder: it has no metadata.json to edit"
        )
    if source.skill_meta_error:
        raise CurationError(422, f"{source.root.name}: {source.skill_meta_error}; fix it first")
    current = source.skill_meta or {"name": source.root.name, "type": "learned", "guidelines": ""}
    meta, changed = edited_metadata(current, changes)
    tmp = _assemble(target)
    try:
        os.rmdir(tmp)
        shutil.copytree(source.root, tmp, symlinks=True)
        check_execution(meta.get("execution") or {}, tmp)
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        _write_provenance(tmp, "metadata_edit", {"source": source_rel, "changed": changed})
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %s: %s with metadata.json fields %s edited", target, source_rel, sorted(changed))
    return {"changed": changed, "metadata": meta}
