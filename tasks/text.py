"""Text analysis: word and sentence statistics, readability and keywords, for any language."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from tasks.jobkit.errors import InvalidJobInput
from tasks.jobkit.progress import Progress
from tasks.jobkit.registry import job

MAX_TEXT_CHARS = 500_000
WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*", re.UNICODE)
SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f\u0964])\s+|\n{2,}")

ANALYZE_SCHEMA = {
    "type": "object",
    "title": "Analyze text",
    "properties": {
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TEXT_CHARS,
            "description": "The text to analyze, in any language.",
        },
        "top_k": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": 10,
            "description": "How many keywords to return.",
        },
    },
    "required": ["text"],
    "additionalProperties": False,
}


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if s and s.strip()]


def words_of(text: str) -> list[str]:
    return WORD.findall(text)


def keywords(sentences: list[list[str]], top_k: int) -> list[dict[str, Any]]:
    """TF-IDF over sentences: frequent words that are not everywhere (no stop-word list needed)."""
    n = len(sentences)
    tf: Counter[str] = Counter()
    df: Counter[str] = Counter()
    for words in sentences:
        lowered = [w.lower() for w in words if len(w) > 2 and not w.isdigit()]
        tf.update(lowered)
        df.update(set(lowered))
    scored = [(count * math.log(1 + n / df[word]), word, count) for word, count in tf.items()]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [{"word": w, "count": c, "score": round(s, 3)} for s, w, c in scored[:top_k]]


def readability(words: list[str], sentences: int) -> dict[str, float]:
    """LIX and the Automated Readability Index: both count characters, not syllables."""
    if not words or not sentences:
        return {"lix": 0.0, "ari": 0.0}
    letters = sum(len(w) for w in words)
    long_words = sum(1 for w in words if len(w) > 6)
    lix = len(words) / sentences + 100 * long_words / len(words)
    ari = 4.71 * letters / len(words) + 0.5 * len(words) / sentences - 21.43
    return {"lix": round(lix, 2), "ari": round(ari, 2)}


@job(schema=ANALYZE_SCHEMA, summary="Word and sentence statistics, readability and keywords.")
def analyze(self, text: str, top_k: int = 10) -> dict[str, Any]:
    if not text.strip():
        raise InvalidJobInput("text: must contain something other than white space", public=True)
    sentences = split_sentences(text)
    progress = Progress(self, len(sentences))
    tokenized: list[list[str]] = []
    for i, sentence in enumerate(sentences, 1):
        tokenized.append(words_of(sentence))
        progress.update(i, f"read {i} of {len(sentences)} sentences")
    words = [w for ws in tokenized for w in ws]
    lengths = [len(ws) for ws in tokenized if ws]
    return {
        "characters": len(text),
        "words": len(words),
        "unique_words": len({w.lower() for w in words}),
        "sentences": len(sentences),
        "paragraphs": len([p for p in re.split(r"\n\s*\n", text) if p.strip()]),
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0,
        "average_sentence_words": round(sum(lengths) / len(lengths), 2) if lengths else 0,
        "longest_sentence_words": max(lengths, default=0),
        "readability": readability(words, len(sentences)),
        "keywords": keywords(tokenized, top_k),
    }
