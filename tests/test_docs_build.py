"""The documentation holds together: the docs/ site builds with MkDocs in strict mode (a
warning, such as a broken link or anchor between pages, or a page left out of the nav, fails
it), and every relative link in README.md and the docs resolves to a file of the repository,
and to a heading when it names an anchor in a Markdown file.

The site is built into a temporary directory: nothing is written to the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "api_shim" / "README.md",
    *sorted(DOCS.glob("*.md")),
    *sorted((ROOT / "bench" / "results").glob("*.md")),
]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TEXT_SUFFIXES = {".py", ".vtl", ".md", ".json", ".yml", ".toml", ".txt"}
SKIPPED = {"tests", "test-output", "site", "node_modules", "__pycache__"}
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)


def prose(text: str) -> str:
    """The text outside code blocks and code spans (where brackets are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The ids of a Markdown file's headings, as MkDocs (Python-Markdown's toc) makes them;
    for headings of words, spaces and backticks, GitHub makes the same."""
    headings = HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path.read_text(encoding="utf-8")))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)
    ]  # http:, https:, mailto:


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").is_file() and (site / "architecture" / "index.html").is_file()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{document.relative_to(ROOT)}: {broken}"


def test_no_document_cites_a_file_outside_the_repository():
    """The design notes once lived in a DESIGN.md outside the repository; docs/architecture.md
    holds what a maintainer needs from them."""
    tops = [
        p
        for p in ROOT.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED
    ]
    sources = [
        *DOCUMENTS,
        *ROOT.glob("*.py"),
        *(p for top in tops for p in top.rglob("*") if p.suffix in TEXT_SUFFIXES),
    ]
    citing = [
        str(p.relative_to(ROOT))
        for p in dict.fromkeys(sources)
        if "DESIGN.md" in p.read_text(encoding="utf-8")
    ]
    assert not citing


def test_every_setting_is_documented():
    """docs/configuration.md names every environment variable `Settings` reads."""
    from tasks.ops.settings import variable_names

    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert sorted(n for n in variable_names() if f"`{n}`" not in page) == []


def settings_table() -> str:
    """The variable table of docs/configuration.md as tasks.ops.settings.variables() renders."""
    from tasks.ops.settings import variables

    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in variables()]
    return "\n".join(rows) + "\n"


def test_the_configuration_table_is_the_one_settings_renders():
    """The table is tasks.ops.settings.variables(), row for row: a variable added, removed or
    redescribed in Settings fails here until the page is updated (paste the table below)."""
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    start = page.index("| variable | default | meaning |")
    end = page.find("\n\n", start)
    shown = page[start:] if end < 0 else page[start : end + 1]
    expected = settings_table()
    assert shown == expected, "docs/configuration.md's table should be:\n" + expected
