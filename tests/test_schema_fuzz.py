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
