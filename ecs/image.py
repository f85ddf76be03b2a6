"""Building and pushing the worker image with docker or podman, whichever is installed.

The image's tag is a digest of what goes into it: every file of the build context (the
working tree filtered by .dockerignore, exactly as `docker build` sends it, untracked files
included), the Dockerfile and the platform. A new module, an edited file or another
architecture gives a new tag, hence a build; the same content is never built twice.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "docker/Dockerfile"
PLATFORMS = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}
TAG_PREFIX = "src-"

Runner = Callable[..., subprocess.CompletedProcess]


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool  # a `!pattern` line: takes files back in
    prefix: str  # its literal start, to know which directories it can reach into


def _compile(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (Go's filepath.Match plus `**`)."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(ch)
            else:
                out += pattern[i : end + 1]  # a character class, [^...] negated as in Go
                i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


class DockerIgnore:
    """Which paths `docker build` leaves out of the context, per .dockerignore: patterns
    in order, the last one that matches a path (or one of its parent directories) wins."""

    def __init__(self, text: str) -> None:
        self.patterns: list[_Pattern] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            line = line[1:].strip() if exclusion else line
            line = posixpath.normpath(line.lstrip("/"))
            if line == ".":
                continue
            literal = re.split(r"[*?\[\\]", line, maxsplit=1)[0]
            self.patterns.append(_Pattern(_compile(line), exclusion, literal))

    def ignored(self, path: str) -> bool:
        parents = path.split("/")[:-1]
        candidates = [path] + ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # only a pattern that could change the answer is tried
            if any(pattern.regex.match(c) for c in candidates):
                matched = not pattern.exclusion
        return matched

    def may_take_back(self, directory: str) -> bool:
        """Could a `!pattern` take back something under this ignored directory?"""
        return any(
            p.exclusion
            and (
                p.prefix.startswith(directory + "/")
                or p.prefix == directory
                or (directory + "/").startswith(p.prefix)
            )
            for p in self.patterns
        )


def context_files(root: Path) -> Iterator[str]:
    """The build context's files (relative, '/'-separated, sorted), as docker sends it."""
    ignore_file = root / ".dockerignore"
    rules = DockerIgnore(ignore_file.read_text() if ignore_file.is_file() else "")
    for current, dirs, files in os.walk(root):
        rel_dir = Path(current).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirs):
            path = rel_dir + d
            if not rules.ignored(path) or rules.may_take_back(path):
                kept.append(d)
        dirs[:] = kept
        for f in sorted(files):
            path = rel_dir + f
            if not rules.ignored(path):
                yield path


def content_digest(root: Path, architecture: str, dockerfile: str = DOCKERFILE) -> str:
    """SHA-256 of the platform, the Dockerfile and every context file (path, executable
    bit, content), in a fixed order."""
    digest = hashlib.sha256(f"platform {PLATFORMS[architecture]}\n".encode())
    paths = sorted(set(context_files(root)) | {dockerfile})
    for rel in paths:
        path = root / rel
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            body = b"symlink " + os.readlink(path).encode()
        elif stat.S_ISREG(info.st_mode):
            body = hashlib.sha256(path.read_bytes()).hexdigest().encode()
        else:
            continue  # sockets, fifos: docker cannot send them either
        mode = "x" if info.st_mode & stat.S_IXUSR else "-"
        digest.update(rel.encode() + b"\0" + mode.encode() + b"\0" + body + b"\n")
    return digest.hexdigest()


class ImageBuilder:
    """Knows the tag of the working tree and how to build and push it.

    `runner` is subprocess.run in real use; tests pass a fake that records the commands.
    """

    def __init__(
        self,
        root: Path = ROOT,
        runner: Runner = subprocess.run,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.root = root
        self.runner = runner
        self.which = which

    def tag(self, architecture: str = "X86_64") -> str:
        """A digest of what the image is built from: same content, same tag."""
        if not (self.root / DOCKERFILE).is_file():
            raise BuildError(
                f"no {DOCKERFILE} under {self.root}: deploy from a checkout of "
                "this repository, or pass --image URI"
            )
        return TAG_PREFIX + content_digest(self.root, architecture)[:16]

    def revision(self) -> str | None:
        """The git commit, for the image's revision label; None outside a checkout."""
        try:
            done = self.runner(
                ["git", "rev-parse", "HEAD"],
                cwd=self.root,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:
            return None
        if done.returncode != 0:
            return None
        return done.stdout.strip() or None

    def engine_name(self) -> str:
        for name in ("docker", "podman"):
            if self.which(name):
                return name
        raise BuildError(
            "neither docker nor podman is installed: install one, or pass "
            "--image URI of an image you pushed yourself"
        )

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> None:
        done = self.runner(list(argv), cwd=self.root, input=stdin, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"{argv[0]} {argv[1]} failed with exit code {done.returncode}")

    def build_and_push(self, ecr, uri: str, architecture: str = "X86_64") -> None:
        engine = self.engine_name()
        auth = ecr.get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
        registry = uri.split("/", 1)[0]
        self._run(
            [engine, "login", "--username", user, "--password-stdin", registry], stdin=password
        )
        # podman's default OCI format drops HEALTHCHECK, which ECS and our image rely on.
        image_format = ["--format", "docker"] if engine == "podman" else []
        commit = self.revision()
        label = ["--label", f"org.opencontainers.image.revision={commit}"] if commit else []
        self._run(
            [
                engine,
                "build",
                *image_format,
                "--platform",
                PLATFORMS[architecture],
                *label,
                "-f",
                DOCKERFILE,
                "-t",
                uri,
                ".",
            ]
        )
        self._run([engine, "push", uri])
