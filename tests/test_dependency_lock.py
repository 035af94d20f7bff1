"""The lock is the installation: it matches pyproject.toml, pins every package exactly with
hashes, and is what this environment holds."""

from importlib import metadata

from packaging.requirements import Requirement

from tests.lockfile import LOCK, dependency_digest, locked_pins, normalise, project_requirements, stamped_digest

RUN_MAKE_LOCK = "pyproject.toml and requirements.lock disagree: run `make lock`"


def test_the_lock_was_made_from_this_pyproject():
    assert stamped_digest() == dependency_digest(), RUN_MAKE_LOCK


def test_every_requirement_is_locked_at_a_version_it_admits():
    pins = locked_pins()
    for text in project_requirements():
        req = Requirement(text)
        name = normalise(req.name)
        assert name in pins, f"{req.name} is not in {LOCK.name}: {RUN_MAKE_LOCK}"
        assert req.specifier.contains(pins[name][0], prereleases=True), f"{text} vs {pins[name][0]}: {RUN_MAKE_LOCK}"


def test_every_pin_is_exact_and_hashed_and_torch_is_the_cpu_build():
    pins = locked_pins()
    assert len(pins) > 100, "transitive dependencies are locked too"
    assert all(hashes for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if not h]
    assert pins["torch"][0] == "2.13.0+cpu"
    assert not [name for name in pins if name.startswith("nvidia-")], "no CUDA libraries in the CPU lock"


def test_this_environment_is_installed_from_the_lock():
    pins = locked_pins()
    drift = {}
    for dist in metadata.distributions():
        name = normalise(dist.metadata["Name"])
        if name in pins and pins[name][0] != dist.version:
            drift[name] = (dist.version, pins[name][0])
    assert not drift, f"installed vs locked: {drift}; run `make test` (it reinstalls from the lock)"
