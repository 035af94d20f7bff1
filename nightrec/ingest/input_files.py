"""Which files a source names: a file, a folder (searched recursively) or a glob, each file
once, and the reasons a file cannot be read put in words."""

import glob
import re
from pathlib import Path

from nightrec.errors import InputError

_COMPRESSED = {".gz", ".bz2", ".xz", ".zst", ".zip"}


def resolve_files(source: str | Path) -> list[Path]:
    """A file, a folder (searched recursively for Parquet/CSV and known formats) or a glob."""
    text = str(source)
    path = Path(text)
    if any(ch in text for ch in "*?["):
        files = _unique(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"{text}: the glob matches no files")
        return _refuse_compressed(files)
    if path.is_file():
        return _refuse_compressed([path])
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        _refuse_compressed([p for p in found if _is_event_file(p.with_suffix(""))])
        files = _unique(p for p in found if _is_event_file(p))
        if not files:
            raise InputError(f"{path}: the folder holds no Parquet, CSV or known event files")
        return files
    raise InputError(f"{path}: no such file or folder")


_QUOTED_VALUE = re.compile(r"could not parse `[^`]*`")


def why(exc: Exception) -> str:
    """The first line of a reader's error, with the fix when the cause is a common one, and
    without the value it quotes (an id or any other field of an event row is personal data,
    and this line reaches logs): the column and the expected type say what to fix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _QUOTED_VALUE.sub("could not parse a value", text)
    if "utf-8" in text.lower() or "utf8" in text.lower():
        text += " (the file is not UTF-8: re-encode it, e.g. `iconv -f latin1 -t utf-8`)"
    return text


def _unique(paths) -> list[Path]:
    """Sorted, each file once: a glob through a symlink loop or two links to one file read it once."""
    seen, out = set(), []
    for p in sorted(paths):
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _refuse_compressed(files: list[Path]) -> list[Path]:
    packed = [p for p in files if p.suffix.lower() in _COMPRESSED]
    if packed:
        raise InputError(f"{packed[0]}: compressed input is not read; decompress it first ({len(packed)} such file(s))")
    return files


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _is_event_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in {".parquet", ".pq", ".csv", ".inter"} or path.name in {"u.data", "ratings.dat", "clicks.dat"}
