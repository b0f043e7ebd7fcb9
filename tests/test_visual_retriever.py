"""Visual-document late interaction (#27): tiny ColPali (transformers' save layout) and ColQwen2 (the hub's
layout, variable page grids) load through the real code and equal `MultiVectorEncoder.encode_query` /
`encode_document` in float32 (the same number of vectors, each cosine >= 0.9999; bfloat16 >= 0.999), with
MaxSim scores within 1e-4 of its `similarity`; pages go in as images and as PDFs (JSON, multipart, URL) by
/embed_image (a multi-vector per page, equal to embedding that page's rendering) and are scored against text
queries by /similarity; the rerank routes score text documents as sentence-transformers does; and what these
models do not do is a 400 that says what they do."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.engine.capabilities import COLBERT, COLBERT_IMAGE, RERANK
from app.engine.requests import EmbedRequest
from app.media.images import ImageLimits

from .engines import serving_fixtures
from .test_multi_vector import assert_same_vectors, reference
from .test_pdf import DPI, make_pdf, pdf_server, png_of, renderings  # noqa: F401 - pdf_server: a fixture
from .tiny_models import tiny_colpali, tiny_colqwen2, tiny_vision_model

QUERIES = ["Which page shows a red square?", "late interaction over page patches", "hi"]
TEXT_DOCUMENTS = ["a page of figures", "Paris is the capital of France."]
LAYOUTS = ["colpali", "colqwen2"]


def page(seed: int, size: tuple[int, int]) -> Image.Image:
    """A page-like picture: a light background with dark blocks where a seed puts them."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size[1], size[0], 3), 245, dtype=np.uint8)
    for _ in range(6):
        x, y = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 8)
        pixels[y : y + rng.integers(4, 20), x : x + rng.integers(4, 30)] = rng.integers(0, 200, 3)
    return Image.fromarray(pixels)


# Pages of different sizes and aspects: ColQwen2 gives each its own grid (rows of different widths in a pass).
PAGES = [page(0, (24, 32)), page(1, (48, 40)), page(2, (64, 64))]
PDF = make_pdf(2)


def encoded(image: Image.Image) -> bytes:
    return png_of(image)


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("visual-retrievers")
    return {
        "colpali": tiny_colpali(root / "colpali"),
        "colqwen2": tiny_colqwen2(root / "colqwen2", seed=1),
        "clip": tiny_vision_model(root / "clip", "clip"),
    }


settings, engine, client = serving_fixtures(
    PDF_DPI=str(DPI), IMAGE_URL_FETCH="true", ALLOWED_IMAGE_NETWORKS="127.0.0.1"
)


@pytest.fixture(scope="module")
def references(directories):
    return {name: reference(directories[name]) for name in LAYOUTS}


def limits():
    return ImageLimits.from_settings(Settings.from_env({"PDF_DPI": str(DPI)}), documents=True)


def embed_pages(engine, model, images: list[bytes], **fields):
    request = EmbedRequest(field="images", outputs=frozenset({COLBERT}), use_cache=False, **fields)
    return engine.embed_images(model, images, limits(), request)


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_layout_equals_sentence_transformers(engine, references, name):
    model = engine.models[name]
    assert model.family == "visual-multi-vector" and model.capabilities == {COLBERT, COLBERT_IMAGE, RERANK}
    encoder = references[name]
    queries = engine.embed_texts(model, QUERIES, outputs={COLBERT}, is_query=True, use_cache=False)
    assert_same_vectors(queries.colbert, encoder.encode_query(QUERIES, convert_to_numpy=True))
    pages = embed_pages(engine, model, [encoded(image) for image in PAGES])
    assert_same_vectors(pages.colbert, encoder.encode_document(PAGES, convert_to_numpy=True))
    scores = engine.rerank_images(model, QUERIES, [encoded(image) for image in PAGES], limits(), use_cache=False)
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(PAGES)).numpy()
    np.testing.assert_allclose(scores.scores, expected, atol=1e-4, rtol=0)
    # text documents are rendered as queries, as sentence-transformers renders them
    reranked = engine.rerank(model, QUERIES, TEXT_DOCUMENTS, use_cache=False).scores
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(TEXT_DOCUMENTS)).numpy()
    np.testing.assert_allclose(reranked, expected, atol=1e-4, rtol=0)


def test_colqwen2_pages_keep_their_own_grids(engine, references):
    """A vector per merged patch (plus the visual prompt's tokens): more for a bigger page, none shared."""
    counts = [
        len(matrix) for matrix in embed_pages(engine, engine.models["colqwen2"], [encoded(p) for p in PAGES]).colbert
    ]
    assert len(set(counts)) == 3
    alone = [embed_pages(engine, engine.models["colqwen2"], [encoded(p)]).colbert[0] for p in PAGES]
    assert [len(matrix) for matrix in alone] == counts


def test_rows_of_other_requests_share_a_pass(engine):
    """Pages of different sizes from several requests, padded into one pass, equal each page alone."""
    for name in LAYOUTS:
        model = engine.models[name]
        request = EmbedRequest(outputs=frozenset({COLBERT}))
        rows = [model.prepare_image(image, f"images[{i}]", request) for i, image in enumerate(PAGES)]
        together = model.forward("image", rows, frozenset({COLBERT})).multivector
        for row, matrix in zip(rows, together):
            np.testing.assert_allclose(
                model.forward("image", [row], frozenset({COLBERT})).multivector[0], matrix, atol=1e-5
            )


@pytest.mark.parametrize("name", LAYOUTS)
def test_bfloat16_keeps_every_vector(directories, references, name):
    from app.engine.loader import load_model

    model = load_model(directories[name], name, "bfloat16")
    encoder = references[name]
    queries = model.forward(
        "text", model.prepare_texts(QUERIES, EmbedRequest(is_query=True)).rows, frozenset({COLBERT})
    )
    assert_same_vectors(queries.multivector, encoder.encode_query(QUERIES, convert_to_numpy=True), floor=0.999)
    rows = [model.prepare_image(image, "page", EmbedRequest()) for image in PAGES]
    pages = model.forward("image", rows, frozenset({COLBERT})).multivector
    assert_same_vectors(pages, encoder.encode_document(PAGES, convert_to_numpy=True), floor=0.999)


@pytest.mark.parametrize("name", LAYOUTS)
def test_embed_image_sends_a_multi_vector_per_page(client, references, name):
    encoder = references[name]
    renders = renderings(PDF)
    expected = encoder.encode_document([Image.open(io.BytesIO(png)) for png in renders], convert_to_numpy=True)
    pdf = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    image = base64.b64encode(encoded(PAGES[0])).decode()
    body = {"images": [image, pdf], "model": name, "output_type": "colbert", "cache": False}
    answer = client.post("/embed_image", json=body)
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    assert data["pages"] == [{"input": 0, "page": None}, {"input": 1, "page": 1}, {"input": 1, "page": 2}]
    assert "embeddings" not in data and data["colbert_dimension"] == 16
    matrices = [np.array(matrix) for matrix in data["colbert"]]
    assert_same_vectors(matrices[1:], expected)
    assert_same_vectors(matrices[:1], encoder.encode_document(PAGES[:1], convert_to_numpy=True))
    assert data["colbert_shapes"] == [list(matrix.shape) for matrix in matrices]
    # the same pages as multipart files, float16 in base64
    form = {
        "model": name,
        "output_type": "colbert",
        "encoding_format": "base64",
        "colbert_precision": "float16",
        "images": [
            (io.BytesIO(encoded(PAGES[0])), "page.png", "image/png"),
            (io.BytesIO(PDF), "doc.pdf", "application/pdf"),
        ],
    }
    answer = client.post("/embed_image", data=form, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    assert [entry["page"] for entry in data["pages"]] == [None, 1, 2]
    for packed, shape, matrix in zip(data["colbert"], data["colbert_shapes"], matrices):
        half = np.frombuffer(base64.b64decode(packed), dtype="<f2").reshape(shape)
        np.testing.assert_allclose(half, matrix, atol=2e-3)


def test_a_pdf_by_url(client, references, pdf_server):  # noqa: F811 - the fixture imported above
    """The allow-listed URL path: test_pdf's server holds its own three-page PDF."""
    from .test_pdf import PDF as SERVED

    encoder = references["colpali"]
    expected = encoder.encode_document(
        [Image.open(io.BytesIO(png)) for png in renderings(SERVED)], convert_to_numpy=True
    )
    body = {"images": [pdf_server + "/paper.pdf"], "model": "colpali", "output_type": "colbert"}
    answer = client.post("/embed_image", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert [entry["page"] for entry in answer.get_json()["pages"]] == [1, 2, 3]
    assert_same_vectors([np.array(m) for m in answer.get_json()["colbert"]], expected)


def test_multipart_pdf_binary_and_pooled(client, references):
    data = {
        "model": "colqwen2",
        "output_type": "colbert",
        "colbert_precision": "binary",
        "images": (io.BytesIO(PDF), "paper.pdf", "application/pdf"),
    }
    answer = client.post("/embed_image", data=data, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert [entry["page"] for entry in body["pages"]] == [1, 2]
    full = [
        np.array(m)
        for m in client.post(
            "/embed_image",
            json={"images": [base64.b64encode(PDF).decode()], "model": "colqwen2", "output_type": "colbert"},
        ).get_json()["colbert"]
    ]
    for packed, matrix in zip(body["colbert"], full):
        assert np.array_equal(np.array(packed, dtype=np.uint8), np.packbits(matrix > 0, axis=-1))
    pooled = client.post(
        "/embed_image",
        data={
            **{k: v for k, v in data.items() if k != "images"},
            "colbert_precision": "float32",
            "colbert_pool_factor": "2",
            "images": (io.BytesIO(PDF), "paper.pdf", "application/pdf"),
        },
        content_type="multipart/form-data",
    )
    assert pooled.status_code == 200, pooled.get_json()
    for matrix, shape in zip(full, pooled.get_json()["colbert_shapes"]):
        assert shape[0] < len(matrix) and shape[0] >= len(matrix) // 2


@pytest.mark.parametrize("name", LAYOUTS)
def test_similarity_scores_queries_against_pages_and_pdfs(client, references, name):
    encoder = references[name]
    pdf_pages = [Image.open(io.BytesIO(png)) for png in renderings(PDF)]
    images = [base64.b64encode(encoded(PAGES[1])).decode(), base64.b64encode(PDF).decode()]
    answer = client.post("/similarity", json={"texts": QUERIES, "images": images, "model": name})
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document([PAGES[1], *pdf_pages]))
    np.testing.assert_allclose(np.array(data["similarity_matrix"]), expected.numpy(), atol=1e-4, rtol=0)
    assert data["shape"] == [3, 3] and [entry["page"] for entry in data["pages"]] == [None, 1, 2]


def test_the_rerank_routes_score_text_documents(client, references):
    encoder = references["colpali"]
    expected = encoder.similarity(encoder.encode_query(QUERIES[:1]), encoder.encode_document(TEXT_DOCUMENTS)).numpy()[0]
    answer = client.post("/v1/rerank", json={"query": QUERIES[0], "documents": TEXT_DOCUMENTS, "model": "colpali"})
    assert answer.status_code == 200, answer.get_json()
    got = {result["index"]: result["relevance_score"] for result in answer.get_json()["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(TEXT_DOCUMENTS))], expected, atol=1e-4)


def test_what_it_does_not_do_is_a_400_that_says_what_it_does(client):
    image = base64.b64encode(encoded(PAGES[0])).decode()
    cases = [
        ("/embed_image", {"images": [image], "model": "colpali"}, "unsupported_task", "output_types"),
        ("/v1/embeddings", {"input": ["a page"], "model": "colqwen2"}, "unsupported_task", "multi-vector"),
        (
            "/embed_image",
            {"images": [image], "model": "clip", "output_type": "colbert"},
            "unsupported_output",
            "one vector",
        ),
        ("/similarity", {"images": [image], "model": "colpali"}, "unsupported_task", "send texts and images"),
        (
            "/similarity",
            {"texts": ["q"], "images": [image], "model": "colpali", "output_types": ["dense"]},
            None,
            "MaxSim",
        ),
        (
            "/embed_image",
            {"images": [image], "model": "colpali", "output_type": "colbert", "instruction": "x"},
            None,
            "instruction",
        ),
    ]
    for path, body, code, words in cases:
        answer = client.post(path, json=body)
        assert answer.status_code == 400, (path, answer.get_json())
        error = answer.get_json()["error"]
        assert words in error["message"], error
        if code:
            assert error["code"] == code, error


def test_listed_with_its_modalities_and_cached_by_side(client, engine):
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert cards["colqwen2"]["modalities"] == ["text", "image"] and cards["colqwen2"]["outputs"] == ["colbert"]
    assert cards["colqwen2"]["family"] == "visual-multi-vector"
    model = engine.models["colqwen2"]
    image = [encoded(PAGES[2])]
    request = EmbedRequest(field="images", outputs=frozenset({COLBERT}))
    first = engine.embed_images(model, image, limits(), request)
    again = engine.embed_images(model, image, limits(), request)
    as_query = engine.embed_images(model, image, limits(), EmbedRequest(outputs=frozenset({COLBERT}), is_query=True))
    assert (first.cache, again.cache, as_query.cache) == ("miss", "hit", "miss")
    np.testing.assert_array_equal(again.colbert[0], first.colbert[0])
    # the query side's mask keeps what the document side's keeps here: the same vectors, computed apart
    np.testing.assert_allclose(as_query.colbert[0], first.colbert[0], atol=1e-5)


def test_a_retriever_whose_processor_gives_pages_no_ids_is_refused_at_start(tmp_path):
    """Rather than a worker whose warm-up and every page request fail (ModelLoadError is a ValueError, which the
    loader wraps with the model's name)."""
    import torch

    from app.engine.loader import load_model

    from .tiny_models import tiny_colmodernvbert

    directory = tiny_colmodernvbert(tmp_path / "colmodernvbert")
    with pytest.raises(ValueError, match="gives a page image no token ids"):
        load_model(directory, "colmodernvbert", torch.float32)
