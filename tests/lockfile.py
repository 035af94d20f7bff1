"""requirements.lock against pyproject.toml: the digest `make lock` stamps into the lock, and
the pins parsed back. Run as a script, ``--stamp LOCK`` writes the digest (the Makefile does)."""

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
EXTRAS = ("dev", "postgres")  # what `make lock` resolves and the Makefile installs
STAMP = "# pyproject-digest: "


def project_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement strings the lock resolves: dependencies plus the locked extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return list(project["dependencies"]) + [r for name in EXTRAS for r in extras.get(name, [])]


def dependency_digest(pyproject: Path = PYPROJECT) -> str:
    """A digest of everything in pyproject.toml that decides what the lock resolves."""
    project = tomllib.loads(pyproject.read_text())["project"]
    decisive = {key: project.get(key) for key in ("requires-python", "dependencies", "optional-dependencies")}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def stamped_digest(lock: Path = LOCK) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(STAMP):
            return line.removeprefix(STAMP).strip()
    return None


def locked_pins(lock: Path = LOCK) -> dict[str, tuple[str, int]]:
    """Normalised name -> (version, number of hashes) for every entry of the lock."""
    text = lock.read_text().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match is None:
            raise ValueError(f"{lock.name}: not an exact pin: {line[:80]}")
        pins[normalise(match[1])] = (match[2], line.count("--hash="))
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stamp(lock: Path) -> None:
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(STAMP)]
    lines.insert(0, f"{STAMP}{dependency_digest()}")
    lock.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--stamp"] or len(sys.argv) != 3:
        sys.exit("usage: python tests/lockfile.py --stamp requirements.lock")
    stamp(Path(sys.argv[2]))
