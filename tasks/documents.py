"""Document processing: split a long document into sections and summarise each one."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from tasks.jobkit.errors import InvalidJobInput
from tasks.jobkit.progress import Progress
from tasks.jobkit.registry import job
from tasks.text import split_sentences, words_of

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)

SUMMARIZE_SCHEMA = {
    "type": "object",
    "title": "Summarize document",
    "properties": {
        "document": {
            "type": "string",
            "minLength": 1,
            "maxLength": 500_000,
            "description": "Plain text or Markdown; '#' headings start sections.",
        },
        "sentences_per_section": {"type": "integer", "minimum": 1, "maximum": 10, "default": 2},
        "paragraphs_per_section": {
            "type": "integer",
            "minimum": 1,
            "maximum": 50,
            "default": 5,
            "description": "Section size when there are no headings.",
        },
    },
    "required": ["document"],
    "additionalProperties": False,
}


def split_sections(document: str, paragraphs_per_section: int) -> list[tuple[str, str]]:
    """(title, body) pairs: by Markdown headings, else by groups of paragraphs."""
    headings = list(HEADING.finditer(document))
    if headings:
        sections = []
        preface = document[: headings[0].start()].strip()
        if preface:
            sections.append(("Introduction", preface))
        for i, match in enumerate(headings):
            end = headings[i + 1].start() if i + 1 < len(headings) else len(document)
            sections.append((match.group(2), document[match.end() : end].strip()))
        return sections
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", document) if p.strip()]
    return [
        (f"Part {n + 1}", "\n\n".join(paragraphs[i : i + paragraphs_per_section]))
        for n, i in enumerate(range(0, len(paragraphs), paragraphs_per_section))
    ]


def document_frequencies(sections: list[tuple[str, str]]) -> tuple[Counter[str], int]:
    df: Counter[str] = Counter()
    for _, body in sections:
        df.update({w.lower() for w in words_of(body)})
    return df, len(sections)


def extract_summary(body: str, count: int, df: Counter[str], n_docs: int) -> list[str]:
    """The `count` sentences with the highest mean TF-IDF, in their original order."""
    sentences = split_sentences(body)
    if len(sentences) <= count:
        return sentences
    tf = Counter(w.lower() for w in words_of(body))

    def score(sentence: str) -> float:
        ws = [w.lower() for w in words_of(sentence)]
        if not ws:
            return 0.0
        total = sum(tf[w] * math.log(1 + n_docs / max(df[w], 1)) for w in ws)
        return total / math.sqrt(len(ws))

    best = sorted(range(len(sentences)), key=lambda i: -score(sentences[i]))[:count]
    return [sentences[i] for i in sorted(best)]


@job(schema=SUMMARIZE_SCHEMA, summary="Split a document into sections and summarise each.")
def summarize(
    self, document: str, sentences_per_section: int = 2, paragraphs_per_section: int = 5
) -> dict[str, Any]:
    sections = [(t, b) for t, b in split_sections(document, paragraphs_per_section) if b]
    if not sections:
        raise InvalidJobInput("document: has no text to summarise", public=True)
    df, n_docs = document_frequencies(sections)
    progress = Progress(self, len(sections))
    out = []
    for i, (title, body) in enumerate(sections, 1):
        out.append(
            {
                "title": title,
                "words": len(words_of(body)),
                "summary": extract_summary(body, sentences_per_section, df, n_docs),
            }
        )
        progress.update(i, f"summarised section {i} of {len(sections)}: {title[:60]}")
    return {"sections": out, "section_count": len(out), "words": sum(s["words"] for s in out)}
