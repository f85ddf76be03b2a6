"""The image step (never a real build here): a tag made from what goes into the image, the
.dockerignore read as docker reads it, the engine choice, login without the password on
the command line."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from ecs.image import ROOT, BuildError, DockerIgnore, ImageBuilder, context_files


class FakeEcr:
    def get_authorization_token(self):
        token = base64.b64encode(b"AWS:s3cret-password").decode()
        return {"authorizationData": [{"authorizationToken": token}]}


class Recorder:
    def __init__(self, fail: list[str] | None = None) -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.fail = fail

    def __call__(self, argv, **kwargs):
        self.calls.append((list(argv), kwargs))
        out = "abcdef0123456789\n" if argv[:2] == ["git", "rev-parse"] else ""
        code = 1 if argv[:2] == self.fail else 0
        return subprocess.CompletedProcess(argv, code, out, "fatal: no repo" if code else "")


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A git checkout with the repository's .dockerignore and Dockerfile, all committed."""
    root = tmp_path / "repo"
    (root / "docker").mkdir(parents=True)
    (root / "tasks").mkdir()
    shutil.copy(ROOT / ".dockerignore", root / ".dockerignore")
    shutil.copy(ROOT / "docker" / "Dockerfile", root / "docker" / "Dockerfile")
    (root / "tasks" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_an_untracked_module_changes_the_tag(checkout):
    builder = ImageBuilder(root=checkout)
    clean = builder.tag()
    assert clean == builder.tag()  # same content, same tag
    # A new module nobody committed yet goes into the image (COPY . .): a new tag.
    (checkout / "tasks" / "reports.py").write_text("JOBS = []\n")
    with_module = builder.tag()
    assert with_module != clean
    # So does an edit, staged or not, and a change of the Dockerfile.
    (checkout / "tasks" / "__init__.py").write_text("# edited\n")
    assert builder.tag() not in (clean, with_module)
    edited = builder.tag()
    (checkout / "docker" / "Dockerfile").write_text("FROM scratch\n")
    assert builder.tag() != edited


def test_what_the_image_leaves_out_does_not_change_the_tag(checkout):
    builder = ImageBuilder(root=checkout)
    before = builder.tag()
    for path in (
        "tests/test_new.py",
        "tasks/__pycache__/x.cpython-311.pyc",
        ".venv/lib/x.py",
        "notes.txt",
        "tasks/sqs_jobs.egg-info/PKG-INFO",
        "bench/results.json",
    ):
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text("not in the image\n")
    assert builder.tag() == before


def test_each_architecture_has_its_own_tag(checkout):
    builder = ImageBuilder(root=checkout)
    assert builder.tag("X86_64") != builder.tag("ARM64")


def test_the_repository_dockerignore_is_read_as_docker_reads_it():
    rules = DockerIgnore((ROOT / ".dockerignore").read_text())
    sent = [
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "celeryconfig.py",
        "tasks/__init__.py",
        "tasks/worker/gate.py",
        "tasks/http_contract/templates/get_job.request.vtl",
        "ecs/deployer-policy.json",
    ]
    left_out = [
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "docker/Dockerfile",
        "tasks/__pycache__/gate.cpython-311.pyc",
        "tasks/worker/x.pyc",
        "sqs_jobs.egg-info/PKG-INFO",
        "tasks/a.egg-info/x",
        ".env",
        "Makefile",
    ]
    assert [p for p in sent if rules.ignored(p)] == []
    assert [p for p in left_out if not rules.ignored(p)] == []


@pytest.mark.parametrize(
    "text, path, ignored",
    [
        ("*\n!keep/\n", "keep/a/b.py", False),  # a parent directory taken back
        ("*\n!keep/\nkeep/secret*\n", "keep/secret.txt", True),  # the last match wins
        ("**/*.log\n", "a/b/c.log", True),
        ("**/*.log\n", "c.log", True),
        ("docs/**\n", "docs/a/b.md", True),
        ("docs/**\n", "docsx/a", False),
        ("/build\n", "build/out.bin", True),  # a leading slash is the context's root
        ("*.md\n", "sub/x.md", False),  # `*` never crosses a '/'
        ("file?.txt\n", "file1.txt", True),
        ("file[0-9].txt\n", "filex.txt", False),
        ("# a comment\n\n", "anything", False),
    ],
)
def test_dockerignore_patterns(text, path, ignored):
    assert DockerIgnore(text).ignored(path) is ignored


def test_context_files_of_the_repository_are_the_packaged_sources():
    files = list(context_files(ROOT))
    assert "pyproject.toml" in files and "tasks/__init__.py" in files
    assert not [f for f in files if f.startswith(("tests/", ".git/", ".venv/", "docker/"))]


def test_outside_a_checkout_it_says_what_to_do(tmp_path):
    with pytest.raises(BuildError, match="--image"):
        ImageBuilder(root=tmp_path).tag()


@pytest.mark.parametrize(
    "installed, expected", [({"docker", "podman"}, "docker"), ({"podman"}, "podman")]
)
def test_build_and_push_with_the_engine_present(installed, expected):
    runner = Recorder()
    builder = ImageBuilder(runner=runner, which=lambda n: n if n in installed else None)
    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/t1:abc"
    builder.build_and_push(FakeEcr(), uri, "ARM64")
    argvs = [argv for argv, _ in runner.calls if argv[0] != "git"]
    assert argvs == [
        [
            expected,
            "login",
            "--username",
            "AWS",
            "--password-stdin",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ],
        [
            expected,
            "build",
            *(["--format", "docker"] if expected == "podman" else []),
            "--platform",
            "linux/arm64",
            "--label",
            "org.opencontainers.image.revision=abcdef0123456789",
            "-f",
            "docker/Dockerfile",
            "-t",
            uri,
            ".",
        ],
        [expected, "push", uri],
    ]
    login = next(kwargs for argv, kwargs in runner.calls if argv[1] == "login")
    assert login["input"] == "s3cret-password"
    assert all("s3cret-password" not in " ".join(argv) for argv in argvs)


def test_without_git_the_image_has_no_revision_label():
    runner = Recorder(fail=["git", "rev-parse"])
    ImageBuilder(runner=runner, which=lambda n: n).build_and_push(FakeEcr(), "r/x:1")
    build = next(argv for argv, _ in runner.calls if argv[1] == "build")
    assert "--label" not in build


def test_no_engine_and_a_failed_build_are_clear_errors():
    with pytest.raises(BuildError, match="neither docker nor podman"):
        ImageBuilder(runner=Recorder(), which=lambda n: None).build_and_push(FakeEcr(), "r/x:1")
    builder = ImageBuilder(runner=Recorder(fail=["docker", "build"]), which=lambda n: n)
    with pytest.raises(BuildError, match="docker build failed"):
        builder.build_and_push(FakeEcr(), "r/x:1")
