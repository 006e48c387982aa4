"""Validate bodies against Infobip's OpenAPI document "OMNI Failover" (the contract).

Usage from any test::

    from tests.openapi import validate_request, validate_response

    validate_request("/omni/1/advanced", "post", body)
    validate_response("/omni/1/scenarios/{scenarioKey}", "get", 200, body)  # or a concrete path

Both raise :class:`jsonschema.ValidationError` when the body breaks the schema. ``$ref``s are
resolved inside the document. The document is the reduced copy kept with the tests,
``tests/data/infobip-omni-failover-openapi.reduced.json`` (Infobip's v3.210.0 without prose and
unused parts; ``tests/data/README.md`` says where it comes from and how it was made), or the file
named by ``$OMNI_OPENAPI_PATH`` (e.g. Infobip's full document, to check the copy loses nothing).

Known deviation of the document, relaxed by default (``strict=False``): ``Scenario.key`` is typed
``integer/int64`` while every example and every real answer is a 32-character hex string. Formats
are not checked here, so Infobip's dates (``2016-02-23T17:41:11.833+0100``, which the document's
``format: date-time`` does not allow) pass; the Schemathesis run checks formats and handles that
defect itself (``tests/test_sandbox_conformance.py``).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "infobip-omni-failover-openapi.reduced.json"
DOCUMENT_URI = "urn:infobip:omni-failover-openapi"
JSON = "application/json"

#: The five OMNI paths (seven operations) of the document.
OMNI_PATHS = (
    "/omni/1/scenarios",
    "/omni/1/scenarios/{scenarioKey}",
    "/omni/1/advanced",
    "/omni/1/reports",
    "/omni/1/logs",
)


def document_path() -> Path:
    """Where the OpenAPI document is read from (``$OMNI_OPENAPI_PATH`` wins)."""
    return Path(os.environ.get("OMNI_OPENAPI_PATH") or DEFAULT_PATH)


@cache
def _raw_document() -> dict[str, Any]:
    return json.loads(document_path().read_text(encoding="utf-8"))


@cache
def document(strict: bool = False) -> dict[str, Any]:
    """Return the document; unless ``strict``, with its known deviations relaxed (see module doc)."""
    doc = copy.deepcopy(_raw_document())
    if not strict:
        for name, schema in doc["components"]["schemas"].items():
            if name.endswith(".Scenario") and "key" in schema.get("properties", {}):
                schema["properties"]["key"]["type"] = ["integer", "string"]
    return doc


@cache
def _registry(strict: bool) -> Registry:
    resource: Resource[Any] = DRAFT202012.create_resource(document(strict))
    return Registry().with_resource(DOCUMENT_URI, resource)


def _validator(schema: dict[str, Any], strict: bool) -> Draft202012Validator:
    return Draft202012Validator(rebase_refs(schema, DOCUMENT_URI), registry=_registry(strict))


def rebase_refs(node: Any, uri: str) -> Any:
    """Point the document-relative refs (``#/components/...``) of ``node`` at the document ``uri``
    (and drop ``$id``s), so that a validator finds them in the registry."""
    if isinstance(node, dict):
        return {
            k: (
                f"{uri}{v}"
                if k == "$ref" and isinstance(v, str) and v.startswith("#/")
                else rebase_refs(v, uri)
            )
            for k, v in node.items()
            if k != "$id"
        }
    if isinstance(node, list):
        return [rebase_refs(v, uri) for v in node]
    return node


def follow_refs(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``node``'s ``$ref`` to ``#/components/...`` of ``doc`` (responses, request bodies)."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _operation(path: str, method: str, strict: bool = False) -> tuple[str, dict[str, Any]]:
    """Return the path template and the operation object for a template or a concrete path."""
    paths = document(strict)["paths"]
    if path not in paths:
        for template in paths:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path):
                path = template
                break
        else:
            raise KeyError(f"{path} is not a path of the OpenAPI document")
    operation = paths[path].get(method.lower())
    if operation is None:
        raise KeyError(f"{method.upper()} {path} is not an operation of the OpenAPI document")
    return path, operation


def _resolve(node: dict[str, Any], strict: bool = False) -> dict[str, Any]:
    """Follow a ``$ref`` to ``#/components/...`` (responses, request bodies)."""
    return follow_refs(document(strict), node)


def request_schema(
    path: str, method: str, *, content_type: str = JSON, strict: bool = False
) -> dict[str, Any]:
    """Return the request-body schema of an operation."""
    _, operation = _operation(path, method, strict)
    body = _resolve(operation["requestBody"], strict)
    return body["content"][content_type]["schema"]


def response_schema(
    path: str, method: str, status: int | str, *, content_type: str = JSON, strict: bool = False
) -> dict[str, Any]:
    """Return the response schema of an operation for one status code."""
    _, operation = _operation(path, method, strict)
    response = _resolve(operation["responses"][str(status)], strict)
    return response["content"][content_type]["schema"]


def component_schema(name: str, *, strict: bool = False) -> dict[str, Any]:
    """Return a ``{"$ref": ...}`` to a component schema by its short name, e.g. ``"DeliveryReport"``."""
    schemas = document(strict)["components"]["schemas"]
    matches = [full for full in schemas if full == name or full.endswith(f".{name}")]
    if len(matches) != 1:
        raise KeyError(f"component schema {name!r} matches {matches or 'nothing'}")
    return {"$ref": f"#/components/schemas/{matches[0]}"}


def validate(schema: dict[str, Any], body: Any, *, strict: bool = False) -> None:
    """Validate ``body`` against ``schema`` (a schema of the document); raise ``ValidationError``."""
    _validator(schema, strict).validate(body)


def errors(schema: dict[str, Any], body: Any, *, strict: bool = False) -> list[str]:
    """Return every violation of ``schema`` by ``body`` as ``path: message`` (empty when valid)."""
    found = _validator(schema, strict).iter_errors(body)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]


def validate_request(path: str, method: str, body: Any, *, strict: bool = False) -> None:
    """Validate a request body against the operation's JSON request schema."""
    validate(request_schema(path, method, strict=strict), body, strict=strict)


def validate_response(path: str, method: str, status: int | str, body: Any, *, strict: bool = False) -> None:
    """Validate a response body against the operation's JSON response schema for ``status``."""
    validate(response_schema(path, method, status, strict=strict), body, strict=strict)


def response_examples(paths: tuple[str, ...] = OMNI_PATHS) -> Iterator[tuple[str, str, str, str, Any]]:
    """Yield ``(path, method, status, example name, value)`` for every JSON response example."""
    for path in paths:
        for method, operation in document()["paths"][path].items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                content = _resolve(response).get("content", {}).get(JSON, {})
                if "example" in content:
                    yield path, method, status, "example", content["example"]
                for name, example in content.get("examples", {}).items():
                    yield path, method, status, name, _resolve(example).get("value")


def request_examples(paths: tuple[str, ...] = OMNI_PATHS) -> Iterator[tuple[str, str, str, Any]]:
    """Yield ``(path, method, example name, value)`` for every JSON request example."""
    for path in paths:
        for method, operation in document()["paths"][path].items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            content = _resolve(operation["requestBody"]).get("content", {}).get(JSON, {})
            if "example" in content:
                yield path, method, "example", content["example"]
            for name, example in content.get("examples", {}).items():
                yield path, method, name, _resolve(example).get("value")
