"""The image step's commands (never a real build here): tag from git, engine choice, login
without the password on the command line."""

from __future__ import annotations

import base64
import subprocess

import pytest

from ecs.image import BuildError, ImageBuilder


class FakeEcr:
    def get_authorization_token(self):
        token = base64.b64encode(b"AWS:s3cret-password").decode()
        return {"authorizationData": [{"authorizationToken": token}]}


class Recorder:
    def __init__(self, dirty: str = "", fail: str | None = None) -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.dirty = dirty
        self.fail = fail

    def __call__(self, argv, **kwargs):
        self.calls.append((list(argv), kwargs))
        out = {"rev-parse": "abcdef0123456789\n", "status": self.dirty,
               "diff": "--- a change\n"}.get(argv[1], "") if argv[0] == "git" else ""
        code = 1 if argv[:2] == self.fail else 0
        return subprocess.CompletedProcess(argv, code, out, "fatal: no repo" if code else "")


def test_tag_is_the_commit_and_a_dirty_tree_is_marked():
    assert ImageBuilder(runner=Recorder()).tag() == "abcdef012345"
    dirty = ImageBuilder(runner=Recorder(dirty=" M ecs/cli.py\n")).tag()
    assert dirty.startswith("abcdef012345-dirty-") and len(dirty) == len("abcdef012345-dirty-") + 8


def test_not_a_git_checkout_says_what_to_do():
    with pytest.raises(BuildError, match="--image"):
        ImageBuilder(runner=Recorder(fail=["git", "rev-parse"])).tag()


@pytest.mark.parametrize("installed, expected", [({"docker", "podman"}, "docker"),
                                                 ({"podman"}, "podman")])
def test_build_and_push_with_the_engine_present(installed, expected):
    runner = Recorder()
    builder = ImageBuilder(runner=runner, which=lambda n: n if n in installed else None)
    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/t1:abc"
    builder.build_and_push(FakeEcr(), uri, "ARM64")
    argvs = [argv for argv, _ in runner.calls]
    assert argvs == [
        [expected, "login", "--username", "AWS", "--password-stdin",
         "123456789012.dkr.ecr.us-east-1.amazonaws.com"],
        [expected, "build", *(["--format", "docker"] if expected == "podman" else []),
         "--platform", "linux/arm64", "-f", "docker/Dockerfile", "-t", uri, "."],
        [expected, "push", uri],
    ]
    assert runner.calls[0][1]["input"] == "s3cret-password"
    assert all("s3cret-password" not in " ".join(argv) for argv in argvs)


def test_no_engine_and_a_failed_build_are_clear_errors():
    with pytest.raises(BuildError, match="neither docker nor podman"):
        ImageBuilder(runner=Recorder(), which=lambda n: None).build_and_push(FakeEcr(), "r/x:1")
    builder = ImageBuilder(runner=Recorder(fail=["docker", "build"]), which=lambda n: n)
    with pytest.raises(BuildError, match="docker build failed"):
        builder.build_and_push(FakeEcr(), "r/x:1")
