"""The lock is what `make setup` installed, and it satisfies the ranges the package declares."""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith(("#", " ", "-")):
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="checks the project's own environment (make setup), not this one")
def test_the_environment_is_the_lock():
    # a package's own vendored copies (setuptools puts its _vendor folder on sys.path once imported) are not
    # installed packages
    installed = {_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
                 if "_vendor" not in Path(str(d.locate_file(""))).parts}
    installed.pop("gemfuse")
    installed.pop("pip", None) if "pip" not in locked() else None
    pins = locked()
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}, "installed, not as locked: make clean setup"
    assert pins.keys() - installed.keys() == set(), "locked, not installed: make clean setup"


def test_the_lock_satisfies_every_declared_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pins = locked()
    for text in requirements:
        requirement = Requirement(text)
        if requirement.name == "gemfuse" or (requirement.marker and not requirement.marker.evaluate()):
            continue
        version = pins.get(_name(requirement.name))
        assert version is not None, f"{requirement.name} is declared but not locked: make lock"
        assert requirement.specifier.contains(version.split("+")[0], prereleases=True), \
            f"the lock's {requirement.name} {version} is outside the declared {requirement.specifier}: make lock"
