"""A directory is served only as what it is (#27): a model type or module this service does not implement stops
start-up with a message that names it, instead of loading as a mean-pooled dense model that answers vectors the
model was never trained to give. One case per declared model type and module it does not implement, and the
start-up of a real gunicorn on one of them."""

from __future__ import annotations

import json
import shutil

import pytest

from app.config import Settings
from app.engine.errors import ModelLoadError

from .engines import engine_for
from .test_gunicorn import run_gunicorn_expecting_failure
from .tiny_models import tiny_bert, tiny_sentence_transformer


@pytest.fixture(scope="module")
def multi_vector(tmp_path_factory):
    """sentence-transformers' own MultiVectorEncoder save: a Transformer and a token-level Dense, no Pooling."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Transformer

    root = tmp_path_factory.mktemp("multi-vector")
    base = tiny_bert(root / "base")
    MultiVectorEncoder(modules=[Transformer(str(base)), Dense(32, 16, bias=False)], device="cpu").save(
        str(root / "colbert")
    )
    return root / "colbert"


def load(path) -> None:
    engine_for(Settings.from_env({"MODEL_PATH": str(path), "DTYPE": "float32", "WARMUP": "false"}))


def edited(source, target, *, config=None, modules=None, files=()):
    """A copy of `source` with its config_sentence_transformers.json, modules.json or extra files changed."""
    shutil.copytree(source, target)
    if config is not None:
        (target / "config_sentence_transformers.json").write_text(json.dumps(config))
    if modules is not None:
        (target / "modules.json").write_text(json.dumps(modules))
    for name, text in files:
        (target / name).write_text(text)
    return target


def test_a_model_type_no_family_implements_is_refused(multi_vector, tmp_path):
    unknown = edited(multi_vector, tmp_path / "unknown", config={"model_type": "HypotheticalEncoder"})
    with pytest.raises(ModelLoadError, match="model_type 'HypotheticalEncoder'"):
        load(unknown)


def test_multi_vector_encoders_load_as_what_they_are(multi_vector, tmp_path):
    """sentence-transformers' own save and PyLate's model type: the multi-vector family (tests/test_multi_vector.py)."""
    for path in (multi_vector, edited(multi_vector, tmp_path / "pylate", config={"model_type": "ColBERT"})):
        engine = engine_for(Settings.from_env({"MODEL_PATH": str(path), "DTYPE": "float32", "WARMUP": "false"}))
        assert engine.resolve(None).family == "multi-vector"


def test_a_token_level_dense_without_pooling_is_refused(multi_vector, tmp_path):
    """The same stack with no model type said: still token vectors, never mean-pooled into one."""
    undeclared = edited(multi_vector, tmp_path / "undeclared", config={"prompts": {}})
    with pytest.raises(ModelLoadError, match="no Pooling module"):
        load(undeclared)


def test_a_module_it_does_not_implement_is_named(tmp_path):
    dense = tiny_sentence_transformer(tmp_path / "dense")
    listing = json.loads((dense / "modules.json").read_text())
    static = {"idx": len(listing), "name": "9", "path": "", "type": "sentence_transformers.models.StaticEmbedding"}
    with pytest.raises(ModelLoadError, match="StaticEmbedding"):
        load(edited(dense, tmp_path / "static", modules=[*listing, static]))


def test_a_dense_before_pooling_is_refused(tmp_path):
    """A per-token projection: this service applies Dense to the pooled vector only."""
    dense = tiny_sentence_transformer(tmp_path / "dense", dense=16)
    listing = sorted(json.loads((dense / "modules.json").read_text()), key=lambda module: module["idx"])
    kinds = [module["type"].rsplit(".", 1)[-1] for module in listing]
    pooling, projection = listing[kinds.index("Pooling")], listing[kinds.index("Dense")]
    pooling["idx"], projection["idx"] = projection["idx"], pooling["idx"]
    with pytest.raises(ModelLoadError, match="Dense module before Pooling"):
        load(edited(dense, tmp_path / "token-dense", modules=listing))


@pytest.mark.parametrize("architecture", ["ColQwen2ForRetrieval", "ColPaliForRetrieval"])
def test_a_retrieval_architecture_that_is_not_one_is_refused(tmp_path, architecture):
    """Served as a visual retriever (test_visual_retriever.py) only where it loads as one."""
    plain = tiny_bert(tmp_path / "plain")
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "architectures": [architecture]}))
    with pytest.raises(ModelLoadError, match=architecture):
        load(plain)


def test_a_stanford_colbert_metadata_without_its_architecture_is_refused(tmp_path):
    """Without HF_ColBERT, sentence-transformers would add a random projection: never served."""
    plain = tiny_bert(tmp_path / "stanford")
    (plain / "artifact.metadata").write_text(json.dumps({"dim": 128, "query_maxlen": 32}))
    with pytest.raises(ModelLoadError, match="Stanford ColBERT"):
        load(plain)


def test_the_served_kinds_still_load(tmp_path):
    """SentenceTransformer (declared and not), and plain directories, are served as before."""
    dense = tiny_sentence_transformer(tmp_path / "dense")
    declared = json.loads((dense / "config_sentence_transformers.json").read_text())
    assert declared["model_type"] == "SentenceTransformer"
    load(dense)
    load(tiny_bert(tmp_path / "plain"))


@pytest.mark.slow
def test_gunicorn_stops_at_start_naming_the_model_type(multi_vector, tmp_path):
    unknown = edited(multi_vector, tmp_path / "unknown", config={"model_type": "HypotheticalEncoder"})
    output = run_gunicorn_expecting_failure({"MODEL_PATH": str(unknown), "DTYPE": "float32"})
    assert "HypotheticalEncoder" in output and "config error" in output
