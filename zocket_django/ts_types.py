"""JSON Schema → TypeScript type text: the converter ``typescript.generate`` writes declarations with.

``ts_type(schema)`` is the converter on its own. It knows the subset pydantic
produces and a little more: objects (required and optional properties,
``additionalProperties``), arrays, tuples (``prefixItems``),
``anyOf``/``oneOf``/``allOf``, ``enum``/``const``, ``type`` lists and
``nullable``, and local ``$ref``s to named types. Anything it cannot express is
``unknown``, never an error. Output is deterministic.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

_WORDS = """
any as async await bigint boolean break case catch class const continue debugger declare default
delete do else enum export extends false finally for function if implements import in infer
instanceof interface keyof let module namespace never new null number object package private
protected public readonly require return static string super switch symbol this throw true try
type typeof undefined unique unknown var void while with yield App Record Partial
"""
RESERVED_TYPE_NAMES = frozenset(_WORDS.split())

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_REF_PREFIX = "#/$defs/"
# Precedence of a rendered type, to know when it needs parentheses.
_UNION, _INTERSECTION, _ATOM = 0, 1, 2
_INLINE_WIDTH = 72


# -- names -------------------------------------------------------------------------------------


def type_name(raw: str) -> str:
    """A PascalCase TypeScript identifier for a schema name (``Counter_add_input`` → ``CounterAddInput``)."""
    parts = [p for p in re.split(r"[\W_]+", raw) if p]
    name = "".join(p[0].upper() + p[1:] for p in parts) or "Type"
    if not name[0].isalpha():
        name = "T" + name
    if name in RESERVED_TYPE_NAMES:
        name += "Type"
    return name


def unique_type_names(raw_names: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """``type_name`` of each raw name, made unique (``Foo``, ``Foo2``, ...) in sorted order of the raw names."""
    used = set(taken)
    names: dict[str, str] = {}
    for raw in sorted(set(raw_names)):
        base = candidate = type_name(raw)
        n = 2
        while candidate in used:
            candidate = f"{base}{n}"
            n += 1
        used.add(candidate)
        names[raw] = candidate
    return names


def property_key(key: str) -> str:
    """A property name as written in a type: bare when it is an identifier, quoted otherwise."""
    return key if _IDENTIFIER.match(key) else _string(key)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def doc_comment(lines: list[str], indent: str) -> str:
    """A JSDoc block (``/** ... */``) of ``lines``, indented, ending with a newline; empty if no lines."""
    lines = [line.rstrip().replace("*/", "*\\/") for text in lines for line in text.strip().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return ""
    if len(lines) == 1:
        return f"{indent}/** {lines[0]} */\n"
    body = "".join(f"{indent} *{' ' + line if line else ''}\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


# -- JSON Schema → TypeScript ------------------------------------------------------------------


class Converter:
    """Renders JSON schemas as TypeScript types; ``refs`` maps ``$defs`` names to type names."""

    def __init__(self, refs: Mapping[str, str] | None = None, indent: str = "  ") -> None:
        self.refs = dict(refs or {})
        self.unit = indent

    def type(self, schema: Any, depth: int = 0) -> str:
        return self._convert(schema, depth)[0]

    # Every _convert* returns (text, precedence).
    def _convert(self, schema: Any, depth: int) -> tuple[str, int]:
        if schema is True or schema is None:
            return "unknown", _ATOM
        if schema is False:
            return "never", _ATOM
        if not isinstance(schema, Mapping):
            return "unknown", _ATOM
        text, prec = self._convert_core(schema, depth)
        if schema.get("nullable") is True:  # OpenAPI 3.0
            return self._union([(text, prec), ("null", _ATOM)])
        return text, prec

    def _convert_core(self, s: Mapping[str, Any], depth: int) -> tuple[str, int]:
        if "$ref" in s:
            return self.refs.get(local_ref(s) or "", "unknown"), _ATOM
        if "const" in s:
            return _literal(s["const"]), _ATOM
        if "enum" in s and isinstance(s["enum"], list):
            return self._union([(_literal(v), _ATOM) for v in s["enum"]])
        for key in ("anyOf", "oneOf"):
            if isinstance(s.get(key), list):
                return self._union([self._convert(sub, depth) for sub in s[key]])
        if isinstance(s.get("allOf"), list) and s["allOf"]:
            return self._intersection([self._convert(sub, depth) for sub in s["allOf"]])
        kind = s.get("type")
        if isinstance(kind, list):
            return self._union([self._typed(s, k, depth) for k in kind])
        if kind is None:
            if any(k in s for k in ("properties", "additionalProperties", "patternProperties")):
                kind = "object"
            elif any(k in s for k in ("items", "prefixItems")):
                kind = "array"
            else:
                return "unknown", _ATOM
        return self._typed(s, kind, depth)

    def _typed(self, s: Mapping[str, Any], kind: Any, depth: int) -> tuple[str, int]:
        if kind == "object":
            return self._object(s, depth), _ATOM
        if kind == "array":
            return self._array(s, depth)
        simple = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}
        return simple.get(kind, "unknown"), _ATOM

    def _union(self, members: list[tuple[str, int]]) -> tuple[str, int]:
        seen: dict[str, int] = {}
        for text, prec in members:
            if prec == _UNION:  # flatten a nested union
                for part in _split_top(text, "|"):
                    seen.setdefault(part, _INTERSECTION if len(_split_top(part, "&")) > 1 else _ATOM)
            else:
                seen.setdefault(text, prec)
        if "unknown" in seen:
            return "unknown", _ATOM
        seen.pop("never", None)
        if not seen:
            return "never", _ATOM
        if len(seen) == 1:
            return next(iter(seen.items()))
        return " | ".join(seen), _UNION

    def _intersection(self, members: list[tuple[str, int]]) -> tuple[str, int]:
        seen: dict[str, int] = {}
        for text, prec in members:
            if text != "unknown":
                seen.setdefault(text, prec)
        if not seen:
            return "unknown", _ATOM
        if len(seen) == 1:
            return next(iter(seen.items()))
        return " & ".join(_wrap(t, p, _INTERSECTION) for t, p in seen.items()), _INTERSECTION

    def _array(self, s: Mapping[str, Any], depth: int) -> tuple[str, int]:
        prefix = s.get("prefixItems")
        items = s.get("items")
        if isinstance(prefix, list):
            min_items = s.get("minItems", len(prefix))
            elements = []
            for i, sub in enumerate(prefix):
                text = self.type(sub, depth)
                elements.append(f"{text}?" if i >= min_items else text)
            max_items = s.get("maxItems")
            if items is False or (items is None and max_items is not None and max_items <= len(prefix)):
                pass  # exactly these elements
            else:
                rest, prec = self._convert(items, depth)
                elements.append(f"...{_wrap(rest, prec, _ATOM)}[]")
            return f"[{', '.join(elements)}]", _ATOM
        if isinstance(items, list):  # draft 4-2019 tuples
            return self._array({**s, "prefixItems": items, "items": s.get("additionalItems")}, depth)
        element, prec = self._convert(items, depth)
        return f"{_wrap(element, prec, _ATOM)}[]", _ATOM

    def _object(self, s: Mapping[str, Any], depth: int) -> str:
        properties = s.get("properties") if isinstance(s.get("properties"), Mapping) else {}
        extra = s.get("additionalProperties")
        patterns = s.get("patternProperties")
        if not properties:
            if extra is False and not patterns:
                return "Record<string, never>"
            values: list[tuple[str, int]] = []
            if isinstance(extra, Mapping) and extra:
                values.append(self._convert(extra, depth))
            if isinstance(patterns, Mapping):
                values.extend(self._convert(sub, depth) for sub in patterns.values())
            value = self._union(values)[0] if values else "unknown"
            keys = _key_type(s.get("propertyNames"), self.refs)
            return f"Record<string, {value}>" if keys == "string" else f"Partial<Record<{keys}, {value}>>"
        return self.object_literal(self.members(s, depth + 1), depth)

    def members(self, s: Mapping[str, Any], depth: int) -> list[tuple[str, str]]:
        """(doc comment, ``key?: type``) of each property of object schema ``s``."""
        required = set(s.get("required") or ())
        members = [self._member(name, sub, name in required, depth) for name, sub in s["properties"].items()]
        extra = s.get("additionalProperties")
        if (extra is not None and extra is not False) or s.get("patternProperties"):
            members.append(("", "[key: string]: unknown"))
        return members

    def _member(self, name: str, schema: Any, required: bool, depth: int) -> tuple[str, str]:
        docs = []
        if isinstance(schema, Mapping):
            if isinstance(schema.get("description"), str):
                docs.append(schema["description"])
            if not required and "default" in schema:
                docs.append(f"@default {json.dumps(schema['default'], ensure_ascii=False)}")
            if schema.get("deprecated") is True:
                docs.append("@deprecated")
        doc = doc_comment(docs, "")
        return doc, f"{property_key(name)}{'' if required else '?'}: {self.type(schema, depth)}"

    def object_literal(self, members: list[tuple[str, str]], depth: int, force_block: bool = False) -> str:
        """``{ a: A; b?: B }`` on one line when short and undocumented, as a block otherwise."""
        if not members:
            return "{}"
        line = "{ " + "; ".join(text for _, text in members) + " }"
        if not force_block and not any(doc for doc, _ in members) and "\n" not in line and len(line) <= _INLINE_WIDTH:
            return line
        inner = self.unit * (depth + 1)
        body = ""
        for doc, text in members:
            body += "".join(f"{inner}{d}\n" for d in doc.splitlines()) + f"{inner}{text};\n"
        return "{\n" + body + self.unit * depth + "}"


def ts_type(schema: Any, refs: Mapping[str, str] | None = None) -> str:
    """The TypeScript type of one JSON schema; ``refs`` names the ``$defs`` it may reference."""
    return Converter(refs).type(schema)


def _key_type(schema: Any, refs: Mapping[str, str]) -> str:
    """The keys of a dict from its ``propertyNames``: a named type (an Enum's), literals, or string."""
    if not isinstance(schema, Mapping):
        return "string"
    if "$ref" in schema:
        return refs.get(local_ref(schema) or "", "string")
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if (
        isinstance(values, list)
        and values
        and all(isinstance(v, str | int) and not isinstance(v, bool) for v in values)
    ):
        return " | ".join(dict.fromkeys(_literal(v) for v in values))
    return "string"


def _wrap(text: str, prec: int, needed: int) -> str:
    return f"({text})" if prec < needed else text


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else "number"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + "; ".join(f"{property_key(str(k))}: {_literal(v)}" for k, v in value.items()) + " }"
    return "unknown"


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside brackets and strings (to flatten nested unions)."""
    parts, depth, start, quote, i = [], 0, 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c == '"':
            quote = c
        elif c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts


# -- the schemas of the actors -----------------------------------------------------------------


def local_ref(schema: Any) -> str | None:
    if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith(_REF_PREFIX):
        return schema["$ref"][len(_REF_PREFIX) :]
    return None


def ref_counts(roots: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            target = local_ref(node)
            if target is not None:
                counts[target] = counts.get(target, 0) + 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for root in roots:
        walk(root)
    return counts
