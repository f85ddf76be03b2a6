"""The locked dependencies: requirements*.lock against pyproject.toml, the Makefile and the image.

`make` installs requirements.lock and docker/Dockerfile installs requirements-runtime.lock,
both with --require-hashes; `make lock` writes them from pyproject.toml. These checks read files
only (no network, no pip), so they catch a lock left stale by an edit to pyproject.toml.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
TEST_LOCK = ROOT / "requirements.lock"
# tasks/ builds on these packages' internals (the SQS channel, the worker's consumer and
# request, billiard's errors): each is bounded below the next minor of the tested version.
BOUNDED = ("celery", "kombu", "billiard")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}(?![0-9a-f])")


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: frozenset[str]

    @property
    def version(self) -> Version:
        (spec,) = self.requirement.specifier
        return Version(spec.version)


def logical_lines(text: str) -> list[str]:
    """Lines of a requirements file with backslash continuations joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def read_lock(path: Path) -> dict[NormalizedName, Pin]:
    pins: dict[NormalizedName, Pin] = {}
    for line in logical_lines(path.read_text()):
        assert not line.startswith("-"), f"{path.name}: unexpected option line {line!r}"
        requirement = Requirement(line.split("--hash=", 1)[0].strip())
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path.name}: {name} is pinned twice"
        pins[name] = Pin(requirement, frozenset(HASH.findall(line)))
    return pins


def direct(group: str) -> dict[NormalizedName, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = (
        project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    )
    requirements = [Requirement(text) for text in texts]
    return {canonicalize_name(r.name): r for r in requirements}


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined."""
    out, current = [], ""
    for raw in dockerfile.splitlines():
        stripped = raw.strip()
        if not stripped or (stripped.startswith("#") and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, args = (current + stripped).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        current = ""
    return out


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[NormalizedName, Pin]]:
    return {"runtime": read_lock(RUNTIME_LOCK), "test": read_lock(TEST_LOCK)}


def test_logical_lines_join_continuations_and_skip_comments():
    text = (
        "# header\n"
        "a==1 \\\n    --hash=sha256:" + "0" * 64 + " \\\n    --hash=sha256:" + "1" * 64 + "\n"
        "    # via b\n"
        "c==2 ; sys_platform == 'linux' \\\n    --hash=sha256:" + "2" * 64 + "\n"
    )
    lines = logical_lines(text)
    assert [line.split()[0] for line in lines] == ["a==1", "c==2"]
    assert len(HASH.findall(lines[0])) == 2
    assert Requirement(lines[1].split("--hash=")[0].strip()).marker is not None


@pytest.mark.parametrize("path", [RUNTIME_LOCK, TEST_LOCK], ids=lambda p: p.name)
def test_every_entry_is_pinned_exactly_with_sha256_hashes(path: Path):
    """What pip's --require-hashes demands of every line, and what `make lock` writes."""
    pins = read_lock(path)
    assert pins, f"{path.name} pins nothing"
    for name, pin in pins.items():
        specs = list(pin.requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
            f"{path.name}: {pin.requirement} is not pinned with a single =="
        )
        assert pin.hashes, f"{path.name}: {name} has no --hash=sha256:"
    assert "make lock" in "\n".join(path.read_text().splitlines()[:10]), (
        f"{path.name}: its header should say how to regenerate it (`make lock`)"
    )


@pytest.mark.parametrize(
    ("group", "lock"), [("runtime", "runtime"), ("runtime", "test"), ("test", "test")]
)
def test_every_direct_dependency_is_locked_at_a_version_pyproject_allows(
    locks: dict[str, dict[NormalizedName, Pin]], group: str, lock: str
):
    pins = locks[lock]
    for name, wanted in direct(group).items():
        assert name in pins, (
            f"{wanted} ({group} dependency in pyproject.toml) is missing "
            f"from the {lock} lock: run `make lock`"
        )
        version = pins[name].version
        assert wanted.specifier.contains(version, prereleases=True), (
            f"the {lock} lock pins {name}=={version}, outside pyproject.toml's "
            f"{wanted}: run `make lock`"
        )


def test_the_image_gets_the_versions_the_tests_ran_on(locks: dict[str, dict[NormalizedName, Pin]]):
    runtime, test = locks["runtime"], locks["test"]
    for name, pin in runtime.items():
        assert name in test, f"{name} is in runtime.lock but not in test.lock"
        assert pin.version == test[name].version, (
            f"{name}: runtime.lock pins {pin.version}, test.lock {test[name].version}"
        )
        assert pin.hashes <= test[name].hashes, f"{name}: runtime.lock has hashes test.lock lacks"


@pytest.mark.parametrize("name", BOUNDED)
def test_celery_kombu_billiard_are_bounded_at_the_next_minor_of_the_locked_version(
    locks: dict[str, dict[NormalizedName, Pin]], name: str
):
    wanted = direct("runtime").get(canonicalize_name(name))
    assert wanted is not None, f"{name} is not a direct dependency in pyproject.toml"
    specifier: SpecifierSet = wanted.specifier
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in specifier), (
        f"{wanted} has no upper bound"
    )
    for lock in ("runtime", "test"):
        locked = locks[lock][canonicalize_name(name)].version
        assert specifier.contains(locked), f"{lock}.lock: {name}=={locked} outside {wanted}"
        next_minor = Version(f"{locked.major}.{locked.minor + 1}")
        assert not specifier.contains(next_minor, prereleases=True), (
            f"{wanted} admits {name} {next_minor}, a minor the tests have not run on "
            f"(locked: {locked})"
        )


def test_make_installs_the_test_lock_with_hashes_and_the_project_without_deps():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    prerequisites = recipe.splitlines()[0].split()
    assert "pyproject.toml" in prerequisites and "$(LOCKS)" in prerequisites, recipe
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock", recipe), recipe
    assert re.search(r"pip install .*--no-deps -e \.", recipe), recipe


def test_dockerfile_installs_the_runtime_lock_with_hashes():
    steps = instructions((ROOT / "docker" / "Dockerfile").read_text())
    copies = [
        i
        for i, (kw, args) in enumerate(steps)
        if kw == "COPY" and "requirements-runtime.lock" in args.split()
    ]
    installs = [
        i
        for i, (kw, args) in enumerate(steps)
        if kw == "RUN"
        and re.search(
            r"pip install (.* )?--require-hashes "
            r"(.* )?-r requirements-runtime\.lock",
            args,
        )
    ]
    assert copies and installs and copies[0] < installs[0], steps
    project = [
        i
        for i, (kw, args) in enumerate(steps)
        if kw == "RUN" and re.search(r"pip install --no-deps \.(\s|$)", args)
    ]
    assert project and project[0] > installs[0], "the project goes in after the lock, --no-deps"
    assert not any(
        kw == "RUN"
        and "pip install" in args
        and "-r " in args
        and "requirements-runtime.lock" not in args
        for kw, args in steps
    ), steps
    allowed = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert allowed & {"!requirements/", "!requirements", "!requirements-runtime.lock"}, (
        ".dockerignore keeps requirements-runtime.lock out of the build context"
    )
