"""API Gateway's mapping-template variables ($input, $util, $context), for airspeed-ext.

API Gateway renders templates with Velocity 1.7 on Java objects; this module gives airspeed
the same objects with the same behaviour where our templates can tell: strings behave like
java.lang.String (UTF-16 length and substring, regex `matches`/`replaceAll`), and
`$util.escapeJavaScript` is Apache Commons Lang's (non-ASCII as \\uXXXX, `'` as \\').
"""

from __future__ import annotations

import base64
import functools
import json
import re
import struct
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import airspeed


class JavaString(str):
    """A str with the java.lang.String methods templates call."""

    def _units(self) -> bytes:
        return self.encode("utf-16-le", "surrogatepass")

    def length(self) -> int:
        return len(self._units()) // 2

    def substring(self, start: int, end: int | None = None) -> JavaString:
        units = self._units()
        stop = len(units) if end is None else 2 * end
        if start < 0 or stop > len(units) or 2 * start > stop:
            raise IndexError(f"substring({start}, {end}) out of range")
        return JavaString(units[2 * start : stop].decode("utf-16-le", "surrogatepass"))

    def matches(self, pattern: str) -> bool:
        return re.fullmatch(pattern, self) is not None

    def replaceAll(self, pattern: str, replacement: str) -> JavaString:
        return JavaString(re.sub(pattern, _java_replacement(replacement), self))

    def replace(self, old: str, new: str, count: int = -1) -> JavaString:  # type: ignore[override]
        return JavaString(str.replace(self, old, new, count))

    def contains(self, part: str) -> bool:
        return part in self

    def indexOf(self, part: str) -> int:
        """In UTF-16 units, as Java counts (-1: not found)."""
        at = str.find(self, part)
        return at if at < 0 else JavaString(self[:at]).length()

    def startsWith(self, prefix: str) -> bool:
        return self.startswith(prefix)

    def endsWith(self, suffix: str) -> bool:
        return self.endswith(suffix)

    def isEmpty(self) -> bool:
        return len(self) == 0

    def trim(self) -> JavaString:
        return JavaString(self.strip("".join(chr(c) for c in range(33))))

    def toLowerCase(self) -> JavaString:
        return JavaString(self.lower())

    def toUpperCase(self) -> JavaString:
        return JavaString(self.upper())

    def equals(self, other: object) -> bool:
        return str(self) == other


def _java_replacement(replacement: str) -> str:
    """java.util.regex replacement syntax (`$1`, `\\x`) to Python's."""
    out = []
    i = 0
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1].replace("\\", "\\\\"))
            i += 2
        elif ch == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            out.append(f"\\g<{replacement[i + 1]}>")
            i += 2
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += 1
    return "".join(out)


def java_value(value: Any) -> Any:
    """JSON-decoded data with every string a JavaString (what Velocity sees on AWS)."""
    if isinstance(value, str):
        return JavaString(value)
    if isinstance(value, list):
        return [java_value(v) for v in value]
    if isinstance(value, dict):
        return {k: java_value(v) for k, v in value.items()}
    return value


# --- $util ------------------------------------------------------------------------------
_JS_ESCAPES = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x27: "\\'",
    0x5C: "\\\\",
    0x2F: "\\/",
}


def escape_javascript(text: str) -> str:
    """Commons Lang StringEscapeUtils.escapeJavaScript, on UTF-16 code units as in Java."""
    units = struct.unpack(
        f"<{len(text.encode('utf-16-le', 'surrogatepass')) // 2}H",
        text.encode("utf-16-le", "surrogatepass"),
    )
    out = []
    for unit in units:
        if unit in _JS_ESCAPES:
            out.append(_JS_ESCAPES[unit])
        elif unit < 0x20 or unit > 0x7F:
            out.append(f"\\u{unit:04X}")
        else:
            out.append(chr(unit))
    return "".join(out)


class Util:
    """$util: the functions API Gateway documents for mapping templates."""

    def escapeJavaScript(self, text: Any) -> JavaString:
        return JavaString(escape_javascript(_text(text)))

    def parseJson(self, text: Any) -> Any:
        return java_value(json.loads(_text(text)))

    def urlEncode(self, text: Any) -> JavaString:
        # java.net.URLEncoder: space as '+', only [A-Za-z0-9.*_-] left as they are.
        return JavaString(urllib.parse.quote_plus(_text(text), safe="*").replace("~", "%7E"))

    def urlDecode(self, text: Any) -> JavaString:
        return JavaString(urllib.parse.unquote_plus(_text(text)))

    def base64Encode(self, text: Any) -> JavaString:
        return JavaString(base64.b64encode(_text(text).encode()).decode("ascii"))

    def base64Decode(self, text: Any) -> JavaString:
        return JavaString(base64.b64decode(_text(text)).decode("utf-8", "replace"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --- $input -----------------------------------------------------------------------------
_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_\-$]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def json_path(document: Any, path: str) -> Any:
    """The subset of JSONPath templates use: `$`, `.name`, `['name']`, `[index]`."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath must start with $: {path!r}")
    current = document
    rest = path[1:]
    while rest:
        match = _PATH_TOKEN.match(rest)
        if not match:
            raise ValueError(f"unsupported JSONPath: {path!r}")
        name, index, quoted, dquoted = match.groups()
        key = name if name is not None else quoted if quoted is not None else dquoted
        if index is not None:
            current = (
                current[int(index)]
                if isinstance(current, list) and int(index) < len(current)
                else None
            )
        else:
            current = current.get(key) if isinstance(current, dict) else None
        if current is None:
            return None
        rest = rest[match.end() :]
    return current


@dataclass
class Params:
    path: dict[str, str] = field(default_factory=dict)
    querystring: dict[str, str] = field(default_factory=dict)
    header: dict[str, str] = field(default_factory=dict)


class Input:
    """$input: the payload (request body, or the integration's response) and request params."""

    def __init__(self, body: str, params: Params) -> None:
        self._body = JavaString(body)
        self._params = params
        self._parsed: Any = ...

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)  # airspeed tries item access first; only attributes exist

    @property
    def body(self) -> JavaString:
        return self._body

    def _document(self) -> Any:
        if self._parsed is ...:
            try:
                self._parsed = json.loads(self._body) if self._body.strip() else None
            except ValueError:
                self._parsed = None
        return self._parsed

    def path(self, path: str) -> Any:
        return java_value(json_path(self._document(), path))

    def json(self, path: str) -> JavaString:
        value = json_path(self._document(), path)
        return JavaString(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def params(self, name: str | None = None) -> Any:
        p = self._params
        if name is None:
            return {
                "path": java_value(p.path),
                "querystring": java_value(p.querystring),
                "header": java_value(p.header),
            }
        for source in (p.path, p.querystring):
            if name in source:
                return JavaString(source[name])
        lowered = {k.lower(): v for k, v in p.header.items()}
        value = lowered.get(name.lower())
        return JavaString(value) if value is not None else None


# --- rendering --------------------------------------------------------------------------
@dataclass
class Rendered:
    text: str
    status_override: int | None
    header_overrides: dict[str, str]


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> airspeed.Template:
    template = airspeed.Template(text)
    template.ensure_compiled()
    return template


def render(
    text: str,
    *,
    body: str,
    params: Params,
    context: Mapping[str, Any],
    stage_variables: Mapping[str, str] | None = None,
) -> Rendered:
    """Render one mapping template as API Gateway would, with `context` as $context."""
    ctx = java_value(dict(context))
    ctx["responseOverride"] = {"status": None, "header": {}}
    namespace = {
        "input": Input(body, params),
        "util": Util(),
        "context": ctx,
        "stageVariables": java_value(dict(stage_variables or {})),
    }
    output = _compiled(text).merge(namespace)
    override = ctx["responseOverride"]
    status = override.get("status")
    return Rendered(
        output,
        int(status) if status is not None else None,
        {str(k): str(v) for k, v in (override.get("header") or {}).items()},
    )
