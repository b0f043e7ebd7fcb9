"""The OpenAPI document and the service agree: schemathesis generates requests from /openapi.json for every
operation (valid and invalid bodies) against the live app on a real model, and checks that nothing is a 5xx,
every status and content type is one the document lists, every answer matches its response schema, and bodies
the schema calls invalid are refused."""

from __future__ import annotations

import logging

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from app import create_app
from app.config import Settings

from .engines import started_engine

EXAMPLES = 16  # per operation: about 400 requests in all

# Not positive_data_acceptance: what makes a body valid here is partly beyond JSON Schema (a served model's name,
# an image that decodes, token ids in this vocabulary, a reranker for rerank routes), so a schema-valid body may
# rightly be a 400 or 404.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    allow_header_conformance,
]


@pytest.fixture(scope="module")
def app():
    settings = Settings.from_env(
        {"DTYPE": "float32", "LOG_REQUESTS": "false", "MAX_BATCH_ITEMS": "16", "MAX_INPUT_CHARS": "2000"}
    )
    engine = started_engine(settings)
    return create_app(settings, engine)


def test_every_operation_keeps_to_its_document(app):
    logging.getLogger("app.access").setLevel(logging.WARNING)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures, operations = {}, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(
            case=strategies.one_of(
                operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
            )
        )
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except BaseException as error:  # schemathesis raises an exception group: every operation runs, and
            if isinstance(error, (KeyboardInterrupt, SystemExit)):  # all that failed are reported together
                raise
            failures[operation.label] = str(error)[:1500]
    assert operations >= 28
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())


def _resolve(schema: dict, document: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _object_schemas(operation, document: dict) -> list[dict]:
    """The object schemas an operation's JSON body may take (each branch of a body that is one of several)."""
    content = (operation.definition.raw.get("requestBody") or {}).get("content") or {}
    body = content.get("application/json", {}).get("schema")
    if body is None:
        return []
    body = _resolve(body, document)
    branches = [_resolve(branch, document) for branch in body.get("anyOf") or body.get("oneOf") or [body]]
    return [branch for branch in branches if branch.get("properties")]


def test_an_optional_field_sent_as_null_is_a_field_not_sent(app):
    """Every optional field sent as null is answered as if it were not sent (SDKs send nulls for the options a
    caller left unset): for generated bodies of every operation, each optional field present is sent as null
    and left out, with the same status; the optional fields absent are all sent as null at once."""
    logging.getLogger("app.access").setLevel(logging.WARNING)
    document = app.test_client().get("/openapi.json").get_json()
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    checked, failures = set(), {}
    for result in schema.get_all_operations():
        operation = result.ok()
        branches = _object_schemas(operation, document)
        if not branches:
            continue

        @given(case=operation.as_strategy(GenerationMode.POSITIVE))
        @settings(
            max_examples=4,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            body = case.body
            if not isinstance(body, dict):
                return
            branch = next(
                (b for b in branches if set(b.get("required", ())) <= body.keys() <= b["properties"].keys()), None
            )
            if branch is None:
                return
            optional = [name for name in branch["properties"] if name not in branch.get("required", ())]
            variants = [({**body, **{name: None for name in optional if name not in body}}, body)]
            variants += [
                ({**body, name: None}, {key: value for key, value in body.items() if key != name})
                for name in optional
                if name in body
            ]
            for nulled, absent in variants:
                case.body = absent
                expected = case.call().status_code
                case.body = nulled
                got = case.call()
                if got.status_code != expected:
                    failures[operation.label] = f"{nulled}: {got.status_code}, not {expected}: {got.text[:300]}"
            checked.add(operation.label)

        run()
    assert not failures, "\n".join(f"{label}: {error}" for label, error in failures.items())
    every = {
        "POST /v1/embeddings",
        "POST /embed",
        "POST /embed_text",
        "POST /api/embed",
        "POST /v2/embed",
        "POST /rerank",
    }
    assert every <= checked
