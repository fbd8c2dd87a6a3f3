"""Checkpoints: the best trials' weights in Optuna's artifact store, listed in the study, dropped whole.

A trial among the best `keep` complete ones keeps its `model.pt` in the study's artifact store
(a folder: the study's artifacts/, or --artifacts). Which trial keeps which file is recorded in
the study's system attributes, one key per checkpoint, in the form optuna-dashboard reads for a
trial's artifacts (`dashboard:artifacts:<trial id>:<artifact id>`, an ArtifactMeta as JSON).

Why not `optuna.artifacts.upload_artifact(..., study_or_trial=trial)`: it records the file in
the *trial's* system attributes, and a finished trial can never be changed again (Optuna refuses,
and optuna-dashboard hides its delete button for done trials). A checkpoint that a better trial
supersedes later could then not be unlisted, and the dashboard would list a deleted file and
answer HTTP 500 for it. A study's attributes stay writable, so a dropped checkpoint is unlisted
(its key set to null, as the dashboard's own delete does) and then its file removed: a reader
never sees a listed checkpoint whose file is gone. Each keep or drop is one storage write.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

PREFIX = "dashboard:artifacts:"  # optuna-dashboard's key for a trial's artifact kept in the study
# torch.save writes a zip archive that only torch reads back: a download, not something to open
MIMETYPE = "application/octet-stream"


def _study_id(storage, study_name: str) -> int:
    return storage.get_study_id_from_name(study_name)


def keep(storage, study_name: str, number: int, store, path: Path, ref_of) -> dict[str, Any]:
    """Write `path` (a trial's model.pt) whole into the artifact store, then list it for trial
    `number`. `ref_of(artifact_id)` gives the file as the study records it (see results.checkpoint_path).
    Returns the record: {"artifact", "checkpoint", "trial"}."""
    artifact = str(uuid.uuid4())
    with open(path, "rb") as f:
        store.write(artifact, f)  # the store writes whole (studies.artifact_store)
    sid = _study_id(storage, study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(sid, number)
    meta = {"artifact_id": artifact, "filename": f"trial-{number}-model.pt", "mimetype": MIMETYPE,
            "encoding": None, "trial": number, "checkpoint": ref_of(artifact)}
    storage.set_study_system_attr(sid, f"{PREFIX}{trial_id}:{artifact}", json.dumps(meta))
    return {"artifact": artifact, "checkpoint": meta["checkpoint"], "trial": number}


def kept(storage, study_name: str) -> dict[int, dict[str, Any]]:
    """Trial number -> its listed checkpoint {"artifact", "checkpoint", "key"}; dropped ones are not listed."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in storage.get_study_system_attrs(_study_id(storage, study_name)).items():
        if not key.startswith(PREFIX) or not isinstance(value, str):
            continue
        try:
            meta = json.loads(value)
        except ValueError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get("trial"), int):
            out[meta["trial"]] = {"artifact": meta["artifact_id"], "checkpoint": meta.get("checkpoint"), "key": key}
    return out


def drop(storage, study_name: str, key: str, store, artifact: str) -> None:
    """Unlist a checkpoint, then remove its file (gone already: removed by another worker)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    storage.set_study_system_attr(_study_id(storage, study_name), key, json.dumps(None))
    try:
        store.remove(artifact)
    except (ArtifactNotFound, FileNotFoundError):
        pass


def keep_best(storage, study_name: str, number: int, value: float, done: list[tuple[float, int]], n_keep: int,
              store, save, ref_of, legacy: dict[int, str] | None = None) -> dict[str, Any] | None:
    """Keep trial `number`'s weights if it is among the best `n_keep` complete trials (`done`: (value,
    number) of the others), and drop every listed checkpoint that is not. `save(path)` writes the
    model.pt. Whichever worker finishes a better trial drops the superseded files; trials finishing at
    once on several workers may leave one more than `n_keep` for a while (the next trial drops it). `legacy`: trial
    number -> artifact id of checkpoints an older study recorded in the trial itself (their
    listing cannot be changed; their superseded files are still removed)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    import tempfile

    ranked = sorted([*done, (value, number)])[:n_keep]
    best = {n for _, n in ranked}
    record = None
    if number in best:
        with tempfile.TemporaryDirectory(prefix="tunectl-") as tmp:
            path = Path(tmp) / "model.pt"
            save(path)
            record = keep(storage, study_name, number, store, path, ref_of)
    finished = {n for _, n in done}
    for n, listed in kept(storage, study_name).items():
        # only a complete trial's checkpoint is dropped: another worker's trial that is finishing now is
        # listed but not complete yet (not in `done`), and its own worker ranks it
        if n in finished and n not in best:
            drop(storage, study_name, listed["key"], store, listed["artifact"])
    for n, artifact in (legacy or {}).items():
        if n not in best:
            try:
                store.remove(artifact)
            except (ArtifactNotFound, FileNotFoundError):
                pass
    return record

