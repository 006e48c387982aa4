"""Validate bodies against Infobip's OpenAPI document of the Messages API (the contract).

The document is the reduced copy kept with the tests,
``tests/data/infobip-messages-api-openapi.reduced.json`` (``tests/data/README.md`` says where it
comes from). ``$ref``s are resolved inside the document; formats are not checked here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.openapi import follow_refs, rebase_refs

DOCUMENT_PATH = Path(__file__).resolve().parent / "data" / "infobip-messages-api-openapi.reduced.json"
DOCUMENT_URI = "urn:infobip:messages-api-openapi"
JSON = "application/json"
SEND = "/messages-api/1/messages"
VALIDATE = "/messages-api/1/messages/validate"
REPORTS = "/messages-api/1/reports"


@cache
def document() -> dict[str, Any]:
    """Return the document (read once)."""
    return json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))


@cache
def _registry() -> Registry:
    resource: Resource[Any] = DRAFT202012.create_resource(document())
    return Registry().with_resource(DOCUMENT_URI, resource)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    return follow_refs(document(), node)


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    """Return the JSON response schema of an operation for one status code."""
    response = _resolve(document()["paths"][path][method]["responses"][str(status)])
    return response["content"][JSON]["schema"]


def request_examples(path: str) -> dict[str, Any]:
    """Return the JSON request examples of a POST operation by name."""
    content = document()["paths"][path]["post"]["requestBody"]["content"][JSON]
    return {name: example["value"] for name, example in content.get("examples", {}).items()}


def errors(schema: dict[str, Any], body: Any) -> list[str]:
    """Return every violation of ``schema`` by ``body`` as ``path: message`` (empty when valid)."""
    validator = Draft202012Validator(rebase_refs(schema, DOCUMENT_URI), registry=_registry())
    found = validator.iter_errors(body)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]


def response_errors(path: str, method: str, status: int, body: Any) -> list[str]:
    """Return the violations of the response schema of ``status`` by ``body``."""
    return errors(response_schema(path, method, status), body)
