"""The job tasks' own logic, called directly (no broker)."""

from __future__ import annotations

import pytest

from tasks.debug import add
from tasks.documents import split_sections, summarize
from tasks.enrich import records
from tasks.jobkit.errors import InvalidJobInput
from tasks.jobkit.registry import public_jobs
from tasks.text import analyze

TEXT = (
    "Queues decouple producers from consumers. Workers take messages from the queue. "
    "Each worker records the job state in a table! Clients read the table by job id?\n\n"
    "Die Warteschlange entkoppelt Erzeuger und Verbraucher. 日本語の文です。"
)


def test_analyze_counts_words_sentences_and_finds_keywords():
    result = analyze.run(text=TEXT, top_k=3)
    assert result["sentences"] == 6
    assert result["paragraphs"] == 2
    assert result["words"] > 25
    assert len(result["keywords"]) == 3
    assert {k["word"] for k in result["keywords"]} & {"queue", "table", "worker", "job"}
    assert result["readability"]["lix"] > 0


def test_inputs_are_checked_against_the_schema():
    with pytest.raises(InvalidJobInput, match="text"):
        analyze.run(text="")
    with pytest.raises(InvalidJobInput, match="top_k"):
        analyze.run(text="hi", top_k=0)
    with pytest.raises(InvalidJobInput, match="Additional properties"):
        analyze.run(text="hi", colour="red")
    with pytest.raises(InvalidJobInput, match="white space"):
        analyze.run(text="   \n ")
    with pytest.raises(InvalidJobInput, match="'x' is a required property"):
        add.run(y=1)


def test_summarize_splits_on_headings_and_keeps_sentence_order():
    doc = (
        "Intro words here.\n\n# Alpha\nAlpha one is short. Alpha two mentions queues and "
        "queues again. Alpha three is filler.\n\n# Beta\nBeta only sentence."
    )
    assert [t for t, _ in split_sections(doc, 5)] == ["Introduction", "Alpha", "Beta"]
    result = summarize.run(document=doc, sentences_per_section=1)
    sections = {s["title"]: s["summary"] for s in result["sections"]}
    assert sections["Alpha"] == ["Alpha two mentions queues and queues again."]
    assert sections["Beta"] == ["Beta only sentence."]


def test_summarize_without_headings_groups_paragraphs():
    doc = "\n\n".join(f"Paragraph {i} says something." for i in range(7))
    assert len(summarize.run(document=doc, paragraphs_per_section=3)["sections"]) == 3


def test_records_are_normalised_with_errors_per_record():
    result = records.run(
        records=[
            {
                "name": "ADA LOVELACE",
                "email": " Ada@Example.COM ",
                "phone": "020 7946 0958",
                "country": "uk",
            },
            {"name": "bob", "email": "not-an-email", "birth_date": "2999-01-01"},
            {"name": "Carla", "phone": "+1 (415) 555-0100", "extra": 7},
        ]
    )
    first, _, third = result["records"]
    assert first == {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "email_domain": "example.com",
        "phone": "+442079460958",
        "country": "GB",
    }
    assert third["phone"] == "+14155550100" and third["extra"] == 7
    assert result["valid"] == 2 and result["invalid"] == 1
    assert {(e["index"], e["field"]) for e in result["errors"]} == {(1, "email"), (1, "birth_date")}


def test_public_jobs_have_object_schemas_and_private_ones_are_hidden():
    jobs = public_jobs()
    assert {"tasks.text.analyze", "tasks.documents.summarize", "tasks.enrich.records"} <= set(jobs)
    assert "tests.jobs.crash" not in jobs
    for spec in jobs.values():
        assert spec.schema["type"] == "object" and spec.summary
