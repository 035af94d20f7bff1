"""The model registry: version folders under ``models/``, the ``models/champion`` pointer, and
the promotion gate that decides whether a newly trained model may replace the champion.

A version folder holds what the trainer writes (``model.ckpt``, ``config.json``,
``metrics.json``, ``items.parquet``, ...) plus ``version.json``: the data snapshot id, the run
date, the model it was warm-started from, the code version and the promotion decision.
"""

import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from nightrec.errors import NightrecError
from nightrec.layout import CHAMPION, RETRAIN_REQUEST, VERSION_FILE

VALID_NDCG = "ndcg@10"


def content_hash(path: str | Path) -> str:
    """A SHA-256 over a file's bytes, or over a folder's relative paths and file bytes (sorted).

    Hidden entries (names starting with a dot) are skipped: they are work in progress.
    A missing path hashes to ``"missing"`` so a cache key still forms.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        files = [(path.name, path)]
    elif path.is_dir():
        files = sorted(
            (p.relative_to(path).as_posix(), p)
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    else:
        return "missing"
    for rel, file in files:
        digest.update(rel.encode() + b"\0")
        with open(file, "rb") as fh:
            hashlib.file_digest(fh, lambda: digest)  # one running digest over every file
        digest.update(b"\0")
    return digest.hexdigest()


def code_version() -> str:
    """The installed nightrec version plus the git commit when the code runs from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        base = version("nightrec")
    except PackageNotFoundError:
        base = "0+unknown"
    head = Path(__file__).resolve().parents[1] / ".git"
    try:
        if head.is_file():  # a worktree: ".git" names the real git dir
            head = Path(head.read_text().split(":", 1)[1].strip())
        ref = (head / "HEAD").read_text().strip()
        if ref.startswith("ref: "):
            ref_path = head / ref[5:]
            if not ref_path.is_file() and (head / "commondir").is_file():
                ref_path = (head / (head / "commondir").read_text().strip()).resolve() / ref[5:]
            ref = ref_path.read_text().strip()
        return f"{base}+g{ref[:10]}"
    except (OSError, IndexError):
        return base


def read_json(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NightrecError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise NightrecError(f"{path}: not valid JSON ({exc})") from None


def champion_path(models_dir: Path) -> Path:
    return Path(models_dir) / CHAMPION


def read_champion(models_dir: Path) -> Path | None:
    """The serving version's folder, or None when no model has been promoted yet."""
    link = champion_path(models_dir)
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    if not target.is_dir():
        # A dangling pointer (its version folder was deleted) must not block every night: with
        # no champion the night trains from scratch, serves popularity meanwhile, and the next
        # promotion replaces the link.
        logging.getLogger(__name__).warning(f"{link}: points to {target}, which is not a model folder; ignored")
        return None
    return target


def champion_before(models_dir: Path, run_date: date) -> Path | None:
    """The champion as it was before ``run_date``'s run: a rerun of a night therefore starts from
    the same model (and vocabulary) as the first run did, whatever that run promoted."""
    champion = read_champion(models_dir)
    seen = set()
    while champion is not None and champion.name not in seen:
        seen.add(champion.name)
        meta = read_json(champion / VERSION_FILE) if (champion / VERSION_FILE).is_file() else {}
        trained = meta.get("run_date")
        if not trained or date.fromisoformat(trained) < run_date:
            return champion
        previous = meta.get("previous_champion")
        champion = Path(models_dir) / previous if previous and (Path(models_dir) / previous).is_dir() else None
    return champion


def set_champion(models_dir: Path, version_dir: Path) -> Path:
    """Point ``models/champion`` at ``version_dir`` with an atomic symlink swap."""
    models_dir, version_dir = Path(models_dir), Path(version_dir)
    if version_dir.parent.resolve() != models_dir.resolve():
        raise NightrecError(f"{version_dir}: a champion must be a version folder inside {models_dir}")
    tmp = models_dir / f".{CHAMPION}-{uuid.uuid4().hex[:8]}"
    os.symlink(version_dir.name, tmp)  # relative: the data directory can move
    os.replace(tmp, champion_path(models_dir))
    return champion_path(models_dir)


def valid_ndcg(metrics: dict[str, Any]) -> float:
    """Validation NDCG@10 from a ``metrics.json`` payload."""
    try:
        return float(metrics["valid"][VALID_NDCG])
    except (KeyError, TypeError, ValueError):
        raise NightrecError(f"metrics: no valid.{VALID_NDCG} in {sorted(metrics)}") from None


@dataclass(frozen=True)
class Decision:
    """The promotion gate's verdict, with the numbers it compared."""

    promote: bool
    reason: str
    candidate_ndcg: float
    champion_ndcg: float | None
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def promotion_decision(candidate_ndcg: float, champion_ndcg: float | None, tolerance: float) -> Decision:
    """Promote when there is no champion, or the candidate's validation NDCG@10 is at least the
    champion's minus ``tolerance`` (both measured on the same held-out window)."""
    if champion_ndcg is None:
        return Decision(True, "no champion yet", candidate_ndcg, None, tolerance)
    if candidate_ndcg >= champion_ndcg - tolerance:
        return Decision(
            True,
            f"candidate NDCG@10 {candidate_ndcg:.4f} >= champion {champion_ndcg:.4f} - tolerance {tolerance:g}",
            candidate_ndcg,
            champion_ndcg,
            tolerance,
        )
    return Decision(
        False,
        f"candidate NDCG@10 {candidate_ndcg:.4f} is worse than champion {champion_ndcg:.4f} "
        f"beyond tolerance {tolerance:g}; the champion keeps serving",
        candidate_ndcg,
        champion_ndcg,
        tolerance,
    )


def retrain_due(champion_dir: Path | None, run_date: date, every_days: int) -> bool:
    """A new model is due when there is no champion or it was trained ``every_days`` or more ago."""
    if champion_dir is None or not (champion_dir / VERSION_FILE).is_file():
        return True
    trained = read_json(champion_dir / VERSION_FILE).get("run_date")
    if not trained:
        return True
    return (run_date - date.fromisoformat(trained)).days >= every_days


def version_name(run_date: date, mode: str, key: str) -> str:
    """``<run date>-<mode>-<key[:10]>``: deterministic, so a rerun of the same inputs finds its folder."""
    return f"{run_date.isoformat()}-{mode}-{key[:10]}"


def write_version_meta(version_dir: Path, meta: dict[str, Any]) -> Path:
    path = Path(version_dir) / VERSION_FILE
    current = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**current, **meta}, indent=2, default=str))
    return path


@dataclass(frozen=True)
class TrainPlan:
    """Tonight's training decision, made from one look at the champion.

    ``mode`` is ``scratch``, ``warm`` (from ``base``) or ``reuse`` (no training); ``base`` is the
    champion as it was before the run date (warm-start source and vocabulary); ``live`` is the one
    serving now, which the promotion gate compares the candidate with.
    """

    mode: str
    base: Path | None
    live: Path | None
    note: str

    @property
    def trains(self) -> bool:
        return self.mode != "reuse"

    @property
    def warm_start(self) -> Path | None:
        return self.base if self.mode == "warm" else None


def request_retrain(models_dir: Path, reason: str) -> Path:
    """Ask the next night to retrain from scratch (``models/retrain-requested.json``)."""
    path = Path(models_dir) / RETRAIN_REQUEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reason": reason}))
    return path


def requested_retrain(models_dir: Path) -> str | None:
    """Why a retrain from scratch was requested, or None."""
    path = Path(models_dir) / RETRAIN_REQUEST
    return read_json(path).get("reason", "requested") if path.is_file() else None


def clear_retrain_request(models_dir: Path) -> None:
    (Path(models_dir) / RETRAIN_REQUEST).unlink(missing_ok=True)


def plan_training(models_dir: Path, run_date: date, every_days: int, retrain_reason: str | None = None) -> TrainPlan:
    """Train from scratch (a retrain, or no champion yet), warm-start from the champion when a new
    model is due, or reuse the champion."""
    live, base = read_champion(models_dir), champion_before(models_dir, run_date)
    if retrain_reason is not None:
        return TrainPlan("scratch", base, live, f"retrained from scratch ({retrain_reason})")
    if retrain_due(base, run_date, every_days):
        if base is None:
            return TrainPlan("scratch", None, live, "scratch start")
        return TrainPlan("warm", base, live, f"warm start from {base.name}")
    return TrainPlan("reuse", base, live, f"not due; champion `{base.name}` reused")
