"""The mapping templates (templates/*.vtl): API Gateway's Velocity, shared by every reader.

API Gateway runs them as deployed (tasks.http_contract.openapi puts them in the document),
the shim renders them with tasks.http_contract.vtl, and the worker renders get_job.response
for a callback's body (tasks.http_contract.record). The few deployment names in them
(`@TASK_NAME@`, `@TABLE_NAME@`, `@EXPOSED@`...) are filled in here, and only with plain words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def template_path(name: str) -> Path:
    """The file of a mapping template: `send_task.request` -> templates/send_task.request.vtl."""
    path = TEMPLATES_DIR / (name if name.endswith(".vtl") else f"{name}.vtl")
    if path.parent != TEMPLATES_DIR or not path.is_file():
        raise FileNotFoundError(f"no mapping template named {name!r} in {TEMPLATES_DIR}")
    return path


def load_template(name: str) -> str:
    """A template file's text, as it is in the repository (placeholders not filled)."""
    return template_path(name).read_text(encoding="utf-8")


def fill_template(name: str, **values: str | list[str] | tuple[str, ...]) -> str:
    """A template with its `@NAME@` placeholders replaced.

    A value is a plain name, or a list of plain words (`name` or `name:field`) written
    separated by single spaces; nothing else is let into a template.
    """
    text = load_template(name)
    for key, value in values.items():
        if isinstance(value, str):
            if not _SAFE_NAME.match(value):
                raise ValueError(f"{key}={value!r} is not a plain name; refusing to template it")
        else:
            bad = [word for word in value if not _SAFE_WORD.match(word)]
            if bad:
                raise ValueError(f"{key}: {bad!r} are not plain words; refusing to template them")
            value = " ".join(value)
        text = text.replace(f"@{key.upper()}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise ValueError(f"template {name} still has placeholders {sorted(set(leftover))}")
    return text


def exposed_words(jobs: Mapping[str, Any]) -> list[str]:
    """`task:field` for every record field a job shows over HTTP (@job(expose=...))."""
    return sorted(
        f"{name}:{field}" for name, spec in jobs.items() for field in getattr(spec, "expose", ())
    )
