"""Data enrichment: normalise and validate a batch of contact records, per-record errors."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from tasks.jobkit.progress import Progress
from tasks.jobkit.registry import job

MAX_RECORDS = 5_000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]{2,}$")
COUNTRIES = {
    "AT": "43",
    "AU": "61",
    "BE": "32",
    "BR": "55",
    "CA": "1",
    "CH": "41",
    "CN": "86",
    "DE": "49",
    "DK": "45",
    "ES": "34",
    "FI": "358",
    "FR": "33",
    "GB": "44",
    "IE": "353",
    "IN": "91",
    "IT": "39",
    "JP": "81",
    "MX": "52",
    "NL": "31",
    "NO": "47",
    "NZ": "64",
    "PL": "48",
    "PT": "351",
    "SE": "46",
    "US": "1",
    "ZA": "27",
}
COUNTRY_ALIASES = {
    "UK": "GB",
    "USA": "US",
    "UNITED STATES": "US",
    "UNITED KINGDOM": "GB",
    "GERMANY": "DE",
    "FRANCE": "FR",
    "SPAIN": "ES",
    "ITALY": "IT",
}

RECORDS_SCHEMA = {
    "type": "object",
    "title": "Enrich records",
    "properties": {
        "records": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_RECORDS,
            "items": {"type": "object"},
            "description": "Objects with any of: name, email, phone, country, birth_date.",
        },
        "default_country": {"type": "string", "minLength": 2, "maxLength": 2, "default": "US"},
    },
    "required": ["records"],
    "additionalProperties": False,
}


def clean_text(value: Any) -> str:
    text = unicodedata.normalize("NFC", str(value))
    return re.sub(r"\s+", " ", text).strip()


def normalize_country(value: Any) -> str:
    raw = clean_text(value).upper()
    code = COUNTRY_ALIASES.get(raw, raw)
    if code not in COUNTRIES:
        raise ValueError(f"unknown country {value!r}")
    return code


def normalize_phone(value: Any, country: str) -> str:
    raw = clean_text(value)
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        number = digits
    elif raw.startswith("00"):
        number = digits[2:]
    else:
        number = COUNTRIES[country] + digits.lstrip("0")
    if not 8 <= len(number) <= 15:
        raise ValueError(f"phone {value!r} does not have 8 to 15 digits")
    return "+" + number


def normalize_email(value: Any) -> str:
    email = clean_text(value).lower()
    if not EMAIL.match(email):
        raise ValueError(f"invalid email {value!r}")
    return email


def normalize_name(value: Any) -> str:
    name = clean_text(value)
    if not name:
        raise ValueError("name is empty")
    return name.title() if name.isupper() or name.islower() else name


def normalize_birth_date(value: Any) -> str:
    try:
        born = date.fromisoformat(clean_text(value))
    except ValueError as exc:
        raise ValueError(f"birth_date {value!r} is not an ISO date (YYYY-MM-DD)") from exc
    if born > date.today():
        raise ValueError(f"birth_date {value!r} is in the future")
    return born.isoformat()


def enrich_record(record: dict[str, Any], default_country: str) -> tuple[dict, list[dict]]:
    out: dict[str, Any] = {}
    errors: list[dict] = []

    def attempt(field: str, fn, *args) -> None:
        if record.get(field) in (None, ""):
            return
        try:
            out[field] = fn(record[field], *args)
        except ValueError as exc:
            errors.append({"field": field, "message": str(exc)})

    attempt("name", normalize_name)
    attempt("email", normalize_email)
    attempt("country", normalize_country)
    country = out.get("country", default_country)
    attempt("phone", normalize_phone, country)
    attempt("birth_date", normalize_birth_date)
    if "email" in out:
        out["email_domain"] = out["email"].split("@", 1)[1]
    if "phone" in out or "country" in out:
        out["country"] = country
    for key, value in record.items():
        out.setdefault(key, value)
    return out, errors


@job(schema=RECORDS_SCHEMA, summary="Normalise and validate contact records; errors per record.")
def records(self, records: list[dict[str, Any]], default_country: str = "US") -> dict[str, Any]:
    default_country = normalize_country(default_country)
    progress = Progress(self, len(records))
    results, problems = [], []
    for index, record in enumerate(records):
        enriched, errors = enrich_record(record, default_country)
        results.append(enriched)
        problems.extend({"index": index, **e} for e in errors)
        progress.update(index + 1, f"enriched {index + 1} of {len(records)} records")
    invalid = len({p["index"] for p in problems})
    return {
        "records": results,
        "errors": problems,
        "valid": len(records) - invalid,
        "invalid": invalid,
    }
