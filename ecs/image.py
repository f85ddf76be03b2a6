"""Building and pushing the worker image with docker or podman, whichever is installed."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "docker/Dockerfile"
PLATFORMS = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}

Runner = Callable[..., subprocess.CompletedProcess]


class BuildError(RuntimeError):
    pass


class ImageBuilder:
    """Knows the tag of the working tree and how to build and push it.

    `runner` is subprocess.run in real use; tests pass a fake that records the commands.
    """

    def __init__(self, root: Path = ROOT, runner: Runner = subprocess.run,
                 which: Callable[[str], str | None] = shutil.which) -> None:
        self.root = root
        self.runner = runner
        self.which = which

    def _git(self, *args: str) -> str:
        done = self.runner(["git", *args], cwd=self.root, capture_output=True, text=True,
                           check=False)
        if done.returncode != 0:
            raise BuildError(f"git {' '.join(args)} failed: {done.stderr.strip()} "
                             "(deploy from a git checkout, or pass --image URI)")
        return done.stdout

    def tag(self) -> str:
        """The commit's SHA; a dirty tree adds a digest of its changes, so that a rebuilt
        image never overwrites the clean commit's one."""
        sha = self._git("rev-parse", "HEAD").strip()[:12]
        dirty = self._git("status", "--porcelain", "--untracked-files=no").strip()
        if not dirty:
            return sha
        digest = hashlib.sha256(self._git("diff", "HEAD").encode()).hexdigest()[:8]
        return f"{sha}-dirty-{digest}"

    def engine_name(self) -> str:
        for name in ("docker", "podman"):
            if self.which(name):
                return name
        raise BuildError("neither docker nor podman is installed: install one, or pass "
                         "--image URI of an image you pushed yourself")

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> None:
        done = self.runner(list(argv), cwd=self.root, input=stdin, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"{argv[0]} {argv[1]} failed with exit code {done.returncode}")

    def build_and_push(self, ecr, uri: str, architecture: str = "X86_64") -> None:
        engine = self.engine_name()
        auth = ecr.get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
        registry = uri.split("/", 1)[0]
        self._run([engine, "login", "--username", user, "--password-stdin", registry],
                  stdin=password)
        # podman's default OCI format drops HEALTHCHECK, which ECS and our image rely on.
        image_format = ["--format", "docker"] if engine == "podman" else []
        self._run([engine, "build", *image_format, "--platform", PLATFORMS[architecture],
                   "-f", DOCKERFILE, "-t", uri, "."])
        self._run([engine, "push", uri])
