"""Reduce Infobip's OpenAPI document "OMNI Failover" to what the tests use.

Usage::

    python scripts/reduce_openapi.py FULL_DOCUMENT.json [-o OUTPUT]

``OUTPUT`` defaults to ``tests/data/infobip-omni-failover-openapi.reduced.json`` in this repository.

``FULL_DOCUMENT.json`` is Infobip's document as published (see ``tests/data/README.md`` for where
to get it). The copy keeps every ``/omni/1/...`` path and operation with its parameters, request
bodies, responses, ``security``, JSON examples and every schema keyword that validates or generates
(types, formats, enums, bounds, patterns, ``required``, ``readOnly``/``writeOnly``, discriminators,
titles, schema examples); the components they reach; the security schemes they name. It drops:

* prose: ``description`` keywords (except the one a Response Object requires), ``summary`` of
  operations and examples, tags, ``info.description`` and ``info.contact``;
* the ``x-scopes`` and ``x-throttling-info`` extensions of the operations;
* the webhooks, and every component that no kept path reaches;
* the examples of the ``application/xml`` media types (the media types and their schemas stay).

Instance data (``example``, ``examples``, ``default``, ``enum``, ``const``) is copied verbatim, so a
status's ``description`` field inside an example stays; so do properties named ``description``.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "tests" / "data" / "infobip-omni-failover-openapi.reduced.json"
PATH_PREFIX = "/omni/1/"
JSON = "application/json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

#: JSON Schema keywords whose value is instance data, copied verbatim.
DATA_KEYWORDS = frozenset({"example", "examples", "default", "enum", "const"})
#: Keywords holding a map of name -> subschema (the names are data, not keywords).
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
#: Keywords holding one subschema or a list of them.
SCHEMA_NODES = frozenset(
    {
        "items",
        "prefixItems",
        "additionalProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
REDUCTION_NOTE = (
    "Reduced by scripts/reduce_openapi.py (prose, tags, x-scopes/x-throttling-info, webhooks, "
    "unused components and XML examples removed); see tests/data/README.md"
)


def reduce_schema(schema: Any) -> Any:
    """Return ``schema`` without its ``description`` keywords, at every depth."""
    if isinstance(schema, list):
        return [reduce_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reduced: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            reduced[key] = {name: reduce_schema(sub) for name, sub in value.items()}
        elif key in SCHEMA_NODES:
            reduced[key] = reduce_schema(value)
        else:  # data keywords, discriminator, format, bounds, ...: verbatim
            reduced[key] = value
    return reduced


def reduce_example(example: dict[str, Any]) -> dict[str, Any]:
    """Return an Example Object without its ``summary`` and ``description``."""
    return {k: v for k, v in example.items() if k not in ("summary", "description")}


def reduce_content(content: dict[str, Any]) -> dict[str, Any]:
    """Return a ``content`` map: schemas reduced; examples kept for JSON only."""
    reduced: dict[str, Any] = {}
    for media_type, entry in content.items():
        item: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "schema":
                item[key] = reduce_schema(value)
            elif key in ("example", "examples"):
                if media_type != JSON:
                    continue
                item[key] = (
                    {name: reduce_example(ex) for name, ex in value.items()} if key == "examples" else value
                )
            else:
                item[key] = value
        reduced[media_type] = item
    return reduced


def reduce_parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    """Return a Parameter Object without prose."""
    reduced: dict[str, Any] = {}
    for key, value in parameter.items():
        if key == "description":
            continue
        if key == "schema":
            reduced[key] = reduce_schema(value)
        elif key == "content":
            reduced[key] = reduce_content(value)
        elif key == "examples":
            reduced[key] = {name: reduce_example(ex) for name, ex in value.items()}
        else:
            reduced[key] = value
    return reduced


def reduce_response(response: dict[str, Any]) -> dict[str, Any]:
    """Return a Response Object; its (required, short) ``description`` stays."""
    reduced: dict[str, Any] = {}
    for key, value in response.items():
        if key == "content":
            reduced[key] = reduce_content(value)
        elif key == "headers":
            reduced[key] = {name: reduce_parameter(header) for name, header in value.items()}
        else:
            reduced[key] = value
    return reduced


def reduce_operation(operation: dict[str, Any]) -> dict[str, Any]:
    """Return an Operation Object without tags, prose and ``x-`` extensions."""
    reduced: dict[str, Any] = {}
    for key, value in operation.items():
        if key in ("tags", "summary", "description", "externalDocs") or key.startswith("x-"):
            continue
        if key == "parameters":
            reduced[key] = [reduce_parameter(p) for p in value]
        elif key == "requestBody":
            body = {k: v for k, v in value.items() if k != "description"}
            if "content" in body:
                body["content"] = reduce_content(body["content"])
            reduced[key] = body
        elif key == "responses":
            reduced[key] = {status: reduce_response(r) for status, r in value.items()}
        else:
            reduced[key] = value
    return reduced


def _refs(node: Any) -> set[str]:
    """Return every ``#/components/...`` reference in ``node`` (``$ref``s and discriminator mappings)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            elif key == "mapping" and isinstance(value, dict):
                found |= {v for v in value.values() if isinstance(v, str) and v.startswith("#/")}
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _reachable_components(doc: dict[str, Any], roots: Any) -> dict[str, set[str]]:
    """Return ``{section: {name}}`` of the components reachable from ``roots``."""
    seen: set[str] = set()
    todo = list(_refs(roots))
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        parts = ref.removeprefix("#/").split("/")
        if len(parts) != 3 or parts[0] != "components":
            raise ValueError(f"unexpected reference {ref}")
        todo += _refs(doc["components"][parts[1]][parts[2]])
    reachable: dict[str, set[str]] = {}
    for ref in seen:
        _, section, name = ref.removeprefix("#/").split("/")
        reachable.setdefault(section, set()).add(name)
    return reachable


def reduce_document(doc: dict[str, Any]) -> dict[str, Any]:
    """Return the reduced copy of Infobip's OMNI document (``doc`` is not changed)."""
    paths: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        if not path.startswith(PATH_PREFIX):
            continue
        reduced_item: dict[str, Any] = {}
        for key, value in item.items():
            if key in METHODS:
                reduced_item[key] = reduce_operation(value)
            elif key == "parameters":
                reduced_item[key] = [reduce_parameter(p) for p in value]
            elif key not in ("summary", "description"):
                reduced_item[key] = value
        paths[path] = reduced_item

    reachable = _reachable_components(doc, paths)
    components: dict[str, Any] = {}
    for section, entries in doc["components"].items():
        names = reachable.get(section, set())
        kept = {name: entry for name, entry in entries.items() if name in names}
        if section == "schemas":
            kept = {name: reduce_schema(entry) for name, entry in kept.items()}
        elif section == "responses":
            kept = {name: reduce_response(entry) for name, entry in kept.items()}
        elif section == "parameters":
            kept = {name: reduce_parameter(entry) for name, entry in kept.items()}
        if kept:
            components[section] = kept

    schemes = {
        name
        for item in paths.values()
        for method, operation in item.items()
        if method in METHODS
        for requirement in operation.get("security", doc.get("security", []))
        for name in requirement
    } | {name for requirement in doc.get("security", []) for name in requirement}
    components["securitySchemes"] = {
        name: {k: v for k, v in scheme.items() if k != "description"}
        for name, scheme in doc["components"].get("securitySchemes", {}).items()
        if name in schemes
    }

    info = {k: v for k, v in doc["info"].items() if k not in ("description", "contact")}
    info["x-reduction"] = REDUCTION_NOTE
    reduced: dict[str, Any] = {"openapi": doc["openapi"], "info": info}
    if "servers" in doc:
        reduced["servers"] = doc["servers"]
    if "security" in doc:
        reduced["security"] = doc["security"]
    reduced["paths"] = paths
    reduced["components"] = components
    return reduced


def main(argv: list[str] | None = None) -> int:
    """Read the full document, write the reduced copy, print what was kept."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="Infobip's full OMNI Failover OpenAPI document (JSON)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the copy")
    args = parser.parse_args(argv)

    full = json.loads(args.source.read_text(encoding="utf-8"))
    reduced = reduce_document(full)
    # the layout of Infobip's file: one-space indent, no space after the colons
    text = json.dumps(reduced, indent=1, separators=(",", ":"), ensure_ascii=False) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")

    source_size = args.source.stat().st_size
    kept = {section: len(entries) for section, entries in reduced["components"].items()}
    print(
        f"{args.output}: {len(text.encode())} bytes (source {source_size} bytes); "
        f"{len(reduced['paths'])} paths; components {kept}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
