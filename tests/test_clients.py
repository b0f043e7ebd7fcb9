"""Every compatibility route with the real client it exists for, against one real gunicorn (preload, two
workers): huggingface_hub's InferenceClient (text-embeddings-inference's API), LlamaIndex's
TextEmbeddingsInference and OpenAIEmbedding, LangChain's OllamaEmbeddings and OpenAIEmbeddings, Cohere's
ClientV2 and Client, the earlier BGE-M3 server's bodies
sent with requests; and /docs in Debian's headless chromium. Each client's vectors equal the native route's;
each client's bad request is a 4xx it understands, and the workers keep serving."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import requests

from .gunicorn_process import GunicornProcess

pytestmark = pytest.mark.slow

TEXTS = ["clients work unchanged", "only the base URL changes", "a third text to embed"]
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("clients") / "server.log"
    with GunicornProcess({"DTYPE": "float32"}, workers=2, log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def native(server) -> np.ndarray:
    body = requests.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=60).json()
    return np.array(body["embeddings"])


def still_serving(server) -> None:
    for _ in range(4):  # both workers, whichever takes the connection
        assert requests.post(server.url + "/embed_text", json={"texts": "still here"}, timeout=30).status_code == 200


def test_huggingface_hub_inference_client(server, native, monkeypatch):
    from huggingface_hub import InferenceClient, constants
    from huggingface_hub.errors import HfHubHTTPError

    # The engine, imported into this test process, turns the Hub's offline mode on for model loading; a
    # client's own process has no such setting, and offline mode would refuse even this local URL.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    client = InferenceClient(model=server.url)
    vectors = client.feature_extraction(TEXTS, normalize=True, truncate=True, truncation_direction="right")
    assert np.allclose(vectors, native, atol=1e-6)
    left = client.feature_extraction(" ".join(["long"] * 400) + " end", truncation_direction="left")
    assert left.shape == (1, 384)
    scores = client.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
    assert np.allclose(scores, native[1:] @ native[0], atol=1e-5)
    with pytest.raises(HfHubHTTPError) as info:
        client.feature_extraction(["word " * 400], truncate=False)
    assert info.value.response.status_code == 422 and "tokens long" in str(info.value)
    still_serving(server)


def test_llama_index_text_embeddings_inference(server, native):
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    embedder = TextEmbeddingsInference(model_name=MODEL, base_url=server.url, timeout=60, embed_batch_size=2)
    vectors = embedder.get_text_embedding_batch(TEXTS)
    assert np.allclose(vectors, native, atol=1e-6)
    assert np.allclose(embedder.get_query_embedding(TEXTS[0]), native[0], atol=1e-6)


def test_openai_clients_of_llama_index_and_langchain(server, native):
    """What each needs, as the README says: LlamaIndex's `model_name=` (its `model=` must be one of OpenAI's
    names), LangChain's `check_embedding_ctx_length=False` (else it sends tiktoken ids)."""
    from langchain_openai import OpenAIEmbeddings
    from llama_index.embeddings.openai import OpenAIEmbedding

    llama = OpenAIEmbedding(model_name=MODEL, api_base=server.url + "/v1", api_key="unused")
    assert np.allclose(llama.get_text_embedding_batch(TEXTS), native, atol=1e-6)
    chain = OpenAIEmbeddings(
        model=MODEL, base_url=server.url + "/v1", api_key="unused", check_embedding_ctx_length=False
    )
    assert np.allclose(chain.embed_documents(TEXTS), native, atol=1e-6)


def test_langchain_ollama_embeddings(server, native):
    from langchain_ollama import OllamaEmbeddings

    embedder = OllamaEmbeddings(model=MODEL, base_url=server.url)
    assert np.allclose(embedder.embed_documents(TEXTS), native, atol=1e-6)
    assert np.allclose(embedder.embed_query(TEXTS[1]), native[1], atol=1e-6)
    with pytest.raises(Exception, match="not found"):
        OllamaEmbeddings(model="llama3", base_url=server.url).embed_query("x")
    still_serving(server)


def test_cohere_client_v2_embed(server, native):
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    response = client.embed(
        texts=TEXTS, model=MODEL, input_type="search_document", embedding_types=["float", "int8", "ubinary", "binary"]
    )
    assert np.allclose(response.embeddings.float_, native, atol=1e-6)
    for precision in ("int8", "ubinary", "binary"):
        expected = requests.post(
            server.url + "/embed_text", json={"texts": TEXTS, "precision": precision}, timeout=30
        ).json()["embeddings"]
        assert getattr(response.embeddings, precision) == expected
    assert response.meta.billed_units.input_tokens > 0
    short = client.embed(
        texts=TEXTS[:1], model=MODEL, input_type="search_query", embedding_types=["float"], output_dimension=128
    )
    assert len(short.embeddings.float_[0]) == 128
    with pytest.raises(cohere.errors.BadRequestError) as info:
        client.embed(texts=["word " * 400], model=MODEL, input_type="search_query", truncate="NONE")
    assert "tokens long" in info.value.body["message"]
    still_serving(server)


def test_cohere_client_v1_embed(server, native):
    import cohere

    client = cohere.Client(api_key="unused", base_url=server.url)
    floats = client.embed(texts=TEXTS, model=MODEL, input_type="search_document")
    assert floats.response_type == "embeddings_floats" and np.allclose(floats.embeddings, native, atol=1e-6)
    typed = client.embed(texts=TEXTS, model=MODEL, input_type="search_query", embedding_types=["float", "uint8"])
    assert typed.response_type == "embeddings_by_type" and len(typed.embeddings.uint8[0]) == 384


def test_the_earlier_bge_m3_servers_bodies(server, native):
    body = {"texts": TEXTS, "output_type": "dense", "normalize": True, "max_length": 512, "batch_size": 32}
    answer = requests.post(server.url + "/embed", json=body, timeout=60).json()
    assert np.allclose(answer["embeddings"], native, atol=1e-6)
    refused = requests.post(server.url + "/embed", json={**body, "output_type": "sparse"}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_output"
    tei = requests.post(server.url + "/embed", json={"inputs": TEXTS}, timeout=30).json()
    assert np.allclose(tei, native, atol=1e-6)  # one route, two shapes, told apart by the field
    still_serving(server)


# ----------------------------------------------------------------- /docs in a real browser
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver (.ci/run installs them)"
)
def test_docs_page_lists_the_routes_and_tries_one(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(server.url + "/docs")
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
        paths = {
            element.get_attribute("data-path")
            for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        }
        for route in ("/embed_text", "/v1/embeddings", "/embed", "/v2/embed", "/api/embed", "/rerank", "/info"):
            assert route in paths, sorted(paths)
        operation = browser.find_element(By.ID, "operations-native-embeddings_embed_text")
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        button = wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, ".try-out__btn"))
        if button.text.strip().lower() == "try it out":  # the page opens operations ready to try
            button.click()
        editor = wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
        editor.clear()
        editor.send_keys('{"texts": ["typed into the docs page"]}')
        operation.find_element(By.CSS_SELECTOR, ".execute").click()
        response = wait.until(
            lambda _: operation.find_element(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status")
        )
        assert response.text.strip().startswith("200")
        body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table .highlight-code").text
        assert '"embeddings"' in body and '"dimension": 384' in body
        # Every asset came from this server: the page works with no route to a CDN.
        urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and all(url.startswith(server.url) for url in urls), urls
    finally:
        browser.quit()
