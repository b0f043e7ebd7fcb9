"""Every route through Flask's test client, on the real default model."""

import base64
import re

import numpy as np
import pytest

from app import create_app
from app.api.http.fields import ErrorResponse
from app.api.native.schemas import EmbedTextResponse
from app.api.openai.schemas import OpenAIEmbeddingResponse
from app.api.operations.schemas import HealthResponse, ModelList
from app.config import Settings

from .engines import engine_for
from .gunicorn_process import ROOT


def assert_error(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = ErrorResponse.model_validate(response.get_json()).error
    assert error.message
    if code is not None:
        assert error.code == code
    if param is not None:
        assert error.param == param
    return error.model_dump()


# ----------------------------------------------------------------- /v1/embeddings
def test_openai_route_returns_the_openai_shape(client, reference_model):
    response = client.post("/v1/embeddings", json={"input": ["hello world", "goodbye"], "model": "all-MiniLM-L6-v2"})
    assert response.status_code == 200
    body = OpenAIEmbeddingResponse.model_validate(response.get_json())
    assert [d.index for d in body.data] == [0, 1] and body.model == "all-MiniLM-L6-v2"
    assert body.usage.prompt_tokens == body.usage.total_tokens == 4 + 3
    vectors = np.array([d.embedding for d in body.data], dtype=np.float32)
    reference = reference_model.encode(["hello world", "goodbye"])
    assert (vectors * reference).sum(axis=1).min() >= 0.9999


def test_openai_single_string_and_base64(client):
    floats = client.post("/v1/embeddings", json={"input": "hello", "model": "all-MiniLM-L6-v2"}).get_json()
    packed = client.post(
        "/v1/embeddings", json={"input": "hello", "model": "all-MiniLM-L6-v2", "encoding_format": "base64"}
    ).get_json()
    assert len(floats["data"]) == 1
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    assert np.allclose(decoded, np.array(floats["data"][0]["embedding"], dtype=np.float32), atol=1e-7)


def test_token_ids_are_refused_unless_accepted(client):
    """tiktoken ids (LangChain's default) are not this model's: embedding them would be a silent wrong answer."""
    error = assert_error(
        client.post("/v1/embeddings", json={"input": [[9906, 1917]]}), 400, code="token_ids_not_accepted", param="input"
    )
    assert "check_embedding_ctx_length=False" in error["message"] and "ACCEPT_TOKEN_IDS" in error["message"]


@pytest.fixture
def ids_client(settings, engine):
    return create_app(Settings.from_env({"DTYPE": "float32", "ACCEPT_TOKEN_IDS": "true"}), engine).test_client()


def test_out_of_vocabulary_token_ids_name_their_input(ids_client):
    assert_error(ids_client.post("/v1/embeddings", json={"input": [[5, 10**7]]}), 400, param="input[0]")


def test_openai_token_id_inputs(ids_client, model):
    client = ids_client
    ids = model.tokenizer("token ids work")["input_ids"]
    text = client.post("/v1/embeddings", json={"input": "token ids work"}).get_json()["data"][0]["embedding"]
    one = client.post("/v1/embeddings", json={"input": ids}).get_json()
    many = client.post("/v1/embeddings", json={"input": [ids, ids[1:-1]]}).get_json()
    assert len(one["data"]) == 1 and len(many["data"]) == 2
    for vector in [one["data"][0]["embedding"], many["data"][0]["embedding"], many["data"][1]["embedding"]]:
        assert np.dot(vector, text) >= 0.9999


def test_openai_dimensions_and_ignored_fields(client):
    body = client.post(
        "/v1/embeddings", json={"input": "x", "dimensions": 32, "user": "u-1", "some_client_extension": True}
    ).get_json()
    vector = np.array(body["data"][0]["embedding"])
    assert vector.shape == (32,) and abs(np.linalg.norm(vector) - 1) < 1e-5


@pytest.mark.parametrize(
    "body,param",
    [
        ({"input": []}, "input"),
        ({"input": ""}, "input[0]"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": ["ok", 3]}, "input[1]"),
        ({"input": [[1, 2], []]}, "input[1]"),
        ({"input": [[1, 2], "x"]}, "input[1]"),
        ({"input": [1, -2]}, "input"),
        ({"input": [[5, 10**7]]}, "input"),  # token ids are refused by default (ACCEPT_TOKEN_IDS)
        ({"input": 42}, "input"),
        ({"input": None}, "input"),
        ({}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": "8"}, "dimensions"),
        ({"input": "x", "dimensions": 4096}, "dimensions"),
    ],
)
def test_openai_bad_inputs_name_the_field(client, body, param):
    assert_error(client.post("/v1/embeddings", json=body), 400, param=param)


def test_unknown_model_is_404(client):
    error = assert_error(
        client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"}),
        404,
        code="model_not_found",
        param="model",
    )
    assert "all-MiniLM-L6-v2" in error["message"]


def test_hub_style_model_name_is_accepted(client):
    response = client.post("/v1/embeddings", json={"input": "x", "model": "sentence-transformers/all-MiniLM-L6-v2"})
    assert response.status_code == 200


# --------------------------------------------------------------------- /embed_text
def test_native_route(client, reference_model):
    response = client.post("/embed_text", json={"texts": ["hello world", "goodbye"]})
    body = EmbedTextResponse.model_validate(response.get_json())
    assert body.dimension == 384 and body.model == "all-MiniLM-L6-v2"
    reference = reference_model.encode(["hello world", "goodbye"])
    assert (np.array(body.embeddings) * reference).sum(axis=1).min() >= 0.9999


def test_native_single_text_options(client):
    body = client.post(
        "/embed_text", json={"texts": "hello", "normalize": False, "dimensions": 16, "encoding_format": "base64"}
    ).get_json()
    vector = np.frombuffer(base64.b64decode(body["embeddings"][0]), dtype="<f4")
    assert body["dimension"] == 16 and vector.shape == (16,)
    assert abs(np.linalg.norm(vector) - 1) > 1e-3  # left un-normalised


def test_native_truncate_false_rejects_over_long_text_by_index(client):
    texts = ["short", "word " * 600]
    assert client.post("/embed_text", json={"texts": texts}).status_code == 200
    error = assert_error(
        client.post("/embed_text", json={"texts": texts, "truncate": False}),
        400,
        code="input_too_long",
        param="texts[1]",
    )
    assert "256" in error["message"]


def test_native_prompt_on_a_model_without_prompts(client):
    assert client.post("/embed_text", json={"texts": "x", "prompt": "query: "}).status_code == 200
    error = assert_error(
        client.post("/embed_text", json={"texts": "x", "prompt_name": "query"}), 400, param="prompt_name"
    )
    assert "known prompts: none" in error["message"]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"texts": []}, "texts"),
        ({"texts": ""}, "texts[0]"),
        ({"texts": ["a", None]}, "texts[1]"),
        ({"texts": [["nested"]]}, "texts[0]"),
        ({"texts": "x", "normalize": "yes"}, "normalize"),
        ({"texts": "x", "truncate": 1}, "truncate"),
        ({"texts": "x", "normalise": True}, "normalise"),
        ({"text": "x"}, "texts"),
    ],
)
def test_native_bad_inputs_name_the_field(client, body, param):
    assert_error(client.post("/embed_text", json=body), 400, param=param)


# ------------------------------------------------------------------ request limits
def test_too_many_items(engine):
    client = create_app(Settings.from_env({"MAX_BATCH_ITEMS": "3"}), engine).test_client()
    assert client.post("/embed_text", json={"texts": ["a"] * 3}).status_code == 200
    error = assert_error(
        client.post("/embed_text", json={"texts": ["a"] * 4}), 400, code="too_many_items", param="texts"
    )
    assert "MAX_BATCH_ITEMS" in error["message"]
    assert_error(client.post("/v1/embeddings", json={"input": [[1]] * 4}), 400, code="too_many_items")


def test_over_long_text_in_characters(engine):
    client = create_app(Settings.from_env({"MAX_INPUT_CHARS": "10"}), engine).test_client()
    assert_error(
        client.post("/embed_text", json={"texts": ["ok", "x" * 11]}), 400, code="input_too_long", param="texts[1]"
    )


def test_body_over_max_content_length_is_413(engine):
    client = create_app(Settings.from_env({"MAX_CONTENT_LENGTH": "2048"}), engine).test_client()
    error = assert_error(client.post("/embed_text", json={"texts": ["x" * 5000]}), 413, code="payload_too_large")
    assert "MAX_CONTENT_LENGTH" in error["message"]


def test_invalid_json_wrong_content_type_and_non_objects(client):
    assert_error(
        client.post("/embed_text", data="{not json", content_type="application/json"), 400, code="invalid_json"
    )
    assert_error(client.post("/embed_text", data="", content_type="application/json"), 400, code="invalid_json")
    assert_error(client.post("/embed_text", json=["a list"]), 400, code="invalid_json")
    assert_error(
        client.post("/embed_text", data="texts=x", content_type="application/x-www-form-urlencoded"),
        415,
        code="unsupported_media_type",
    )
    assert_error(client.post("/embed_text", data="hello", content_type="text/plain"), 415)
    # No Content-Type at all is read as JSON.
    assert client.post("/embed_text", data='{"texts": "x"}').status_code == 200


def test_unknown_route_and_wrong_method(client):
    assert_error(client.get("/v2/everything"), 404, code="not_found")
    response = client.get("/embed_text")
    assert_error(response, 405, code="method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(client.delete("/v1/embeddings"), 405)


def test_the_app_keeps_serving_after_bad_input(client):
    for bad in ({"input": []}, {"input": [[10**9]]}, {"input": "x", "model": "nope"}):
        assert client.post("/v1/embeddings", json=bad).status_code in (400, 404)
    assert client.post("/v1/embeddings", json={"input": "still fine"}).status_code == 200


def test_inference_fault_is_a_500_in_the_envelope(client, model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(model, "forward", broken)
    # cache off: the point is the forward pass failing, not an earlier answer being reused
    assert_error(client.post("/embed_text", json={"texts": "x", "cache": False}), 500, code="inference_failed")
    monkeypatch.undo()
    assert client.post("/embed_text", json={"texts": "x"}).status_code == 200


# ------------------------------------------------------------------------- auth
def test_api_keys_protect_embedding_routes_only(engine):
    client = create_app(Settings.from_env({"API_KEYS": "k1,k2"}), engine).test_client()
    assert_error(client.post("/embed_text", json={"texts": "x"}), 401, code="invalid_api_key")
    assert_error(client.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer nope"}), 401)
    assert_error(client.get("/v1/models", headers={"Authorization": "Basic k1"}), 401)
    assert client.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
    for open_path in ("/health", "/ready", "/openapi.json"):
        assert client.get(open_path).status_code == 200


def readme_open_routes() -> set[str]:
    """The routes the README's API_KEYS row says stay open."""
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `API_KEYS`"))
    said = row.split("stay open", 1)[0].rsplit(";", 1)[-1]
    return {path.removeprefix("GET ") for path in re.findall(r"`((?:GET )?/[^`]*)`", said)}


def test_with_api_keys_only_the_documented_routes_answer_without_a_key(engine):
    """#32 finding 10: every route of the app, tried without a key, is refused unless the README lists it open."""
    app = create_app(Settings.from_env({"API_KEYS": "k1"}), engine)
    client = app.test_client()
    documented = readme_open_routes()
    assert {"/health", "/ready", "/openapi.json", "/metrics", "/docs", "/api/version", "/"} <= documented
    open_routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<name>", "swagger-ui.css")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, json={} if method == "POST" else None)
            if response.status_code != 401:
                open_routes.add(rule.rule if method == "GET" else f"{method} {rule.rule}")
    assert {route.replace("<name>", "") for route in open_routes} == documented


# --------------------------------------------------------------- meta routes
def test_models_health_ready(client, engine):
    models = ModelList.model_validate(client.get("/v1/models").get_json())
    assert [m.id for m in models.data] == ["all-MiniLM-L6-v2"]
    assert models.data[0].dimension == 384 and models.data[0].max_input_tokens == 256
    health = HealthResponse.model_validate(client.get("/health").get_json())
    assert health.device == "cpu" and health.dtype == "float32" and "torch" in health.versions
    assert client.get("/ready").get_json() == {"status": "ready"}


def test_ready_is_503_until_the_worker_has_started(settings):
    cold = engine_for(settings)  # loaded as in the master: not started in this process
    client = create_app(settings, cold).test_client()
    assert_error(client.get("/ready"), 503, code="not_ready")
    assert client.get("/health").status_code == 200
    cold.start_worker()
    assert client.get("/ready").status_code == 200


def test_openapi_document_covers_every_route_and_is_valid(client, app):
    from openapi_spec_validator import validate

    document = client.get("/openapi.json").get_json()
    validate(document)
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    # Every API route; the docs page and its assets are the document's viewer, not part of it.
    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.endpoint.startswith("docs.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == documented
    request = document["paths"]["/embed_text"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][request["$ref"].rsplit("/", 1)[-1]]
    assert {"texts", "normalize", "truncate", "prompt_name", "dimensions", "encoding_format"} <= set(
        schema["properties"]
    )
    assert document["paths"]["/v1/embeddings"]["post"]["security"] == [{"bearerAuth": []}, {}]  # no API_KEYS


def test_the_web_layer_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, app.api, app.api.native.similarity, app.api.native.images, app.api.native.texts\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    from .gunicorn_process import ROOT

    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("content_type", [";;;===", "=", "text/plain"])
def test_a_content_type_that_is_not_json_is_a_415(client, content_type):
    response = client.post("/embed_text", data=b'{"texts": "x"}', headers={"Content-Type": content_type})
    assert_error(response, 415, code="unsupported_media_type")
