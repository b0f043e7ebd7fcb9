"""`embedding-service bulk`: readers, sinks and the job's logic with an embedder made here (fast), then the
installed command against a real gunicorn: every input format, both outputs, vectors equal /embed_text's,
a job SIGKILLed three times and resumed, rejects, several URLs, a server restarted mid-job, --local."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from app.bulk.embedders import JobFailed, Refused, ServedModel
from app.bulk.job import BulkJob, JobOptions, job_identity, prepare_output
from app.bulk.records import InputError, read_records
from app.bulk.sinks import make_sink

from .gunicorn_process import GunicornProcess

COMMAND = str(Path(sys.executable).with_name("embedding-service"))


# ------------------------------------------------------------------ inputs
def corpus(count: int, seed: int = 0) -> list[dict]:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
    rng = np.random.default_rng(seed)
    return [
        {"doc_id": f"doc-{i:05d}", "text": " ".join(rng.choice(words, int(rng.integers(3, 40)))) + f" #{i}"}
        for i in range(count)
    ]


def write_input(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode()))
    elif path.suffix == ".csv":
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(row["text"] + "\n" for row in rows))
    return path


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.gz", "in.csv", "in.parquet", "in.txt"])
def test_every_input_format_reads_the_same_records(tmp_path, name):
    rows = corpus(25) + [{"doc_id": "doc-quote", "text": 'a "quoted", comma\nand a newline'}]
    fmt = {"in.jsonl": "jsonl", "in.jsonl.gz": "jsonl", "in.csv": "csv", "in.parquet": "parquet", "in.txt": "text"}
    path = write_input(tmp_path / name, rows if name != "in.txt" else rows[:-1])
    id_field = None if name == "in.txt" else "doc_id"
    records = list(read_records(str(path), fmt[name], "text", id_field))
    expected = rows if name != "in.txt" else rows[:-1]
    assert [r.text for r in records] == [row["text"] for row in expected]
    assert [r.position for r in records] == list(range(len(expected)))
    assert [r.id for r in records] == ([row["doc_id"] for row in expected] if id_field else list(map(str, range(25))))


def test_a_field_the_input_lacks_is_named(tmp_path):
    path = write_input(tmp_path / "in.csv", corpus(3))
    with pytest.raises(InputError, match="no column 'body'"):
        list(read_records(str(path), "csv", "body"))
    path = write_input(tmp_path / "in.jsonl", corpus(3))
    with pytest.raises(InputError, match="no id field 'key'"):
        list(read_records(str(path), "jsonl", "text", "key"))


# ------------------------------------------------------- the job, with an embedder made here
class HashEmbedder:
    """Vectors from each text's hash; refuses any request holding a text with BAD in it (as a server refuses
    the whole request for one bad input); fails for good after `fail_after` requests, when set."""

    def __init__(self, fail_after: int | None = None):
        self.requests: list[list[str]] = []
        self.fail_after = fail_after

    def describe(self) -> ServedModel:
        return ServedModel("hash", "f" * 32, max_items=64, max_input_tokens=512, concurrency=3)

    def embed(self, texts):
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            raise JobFailed("the server went away")
        self.requests.append(list(texts))
        if any("BAD" in text for text in texts):
            raise Refused(400, "texts: one of these is BAD")
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:8] / 255.0 for t in texts]
        return np.asarray(rows, dtype=np.float32), sum(len(t) for t in texts)


def run_job(tmp_path, rows, output: str, embedder=None, **overrides):
    path = write_input(tmp_path / "in.jsonl", rows)
    options = JobOptions(
        input=str(path),
        output=str(tmp_path / output),
        input_format="jsonl",
        output_format="parquet" if output.endswith(".parquet") else "numpy",
        id_field="doc_id",
        chunk_size=overrides.pop("chunk_size", 10),
        batch_tokens=overrides.pop("batch_tokens", 64),
        **overrides,
    )
    embedder = embedder or HashEmbedder()
    model = embedder.describe()
    sink = make_sink(options.output, options.output_format, {"model": model.name, "model_fingerprint": "f" * 32})
    if prepare_output(options, sink, job_identity(options, model)) == "done":
        return None, embedder
    return BulkJob(options, embedder, sink).run(), embedder


def read_output(path: Path) -> tuple[list[str], np.ndarray, dict]:
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
        meta = {k.decode().removeprefix("embedding_service."): v.decode() for k, v in table.schema.metadata.items()}
        return table.column("id").to_pylist(), vectors, meta
    ids = (path / "ids.txt").read_text().splitlines()
    manifest = json.loads((path / "manifest.json").read_text())
    shards = [np.load(path / shard["file"]) for shard in manifest["shards"] if shard["rows"]]
    return ids, np.concatenate(shards).astype(np.float32), manifest


@pytest.mark.parametrize("output", ["out.parquet", "out-numpy"])
def test_a_job_embeds_every_record_once_and_rejects_exactly_the_bad_ones(tmp_path, output):
    rows = corpus(95)
    rows[7]["text"] = "this one is BAD"
    rows[50]["text"] = "BAD as well"
    del rows[60]["text"]  # no text at all
    rows[80]["text"] = rows[3]["text"]  # a duplicate: computed once
    summary, embedder = run_job(tmp_path, rows, output)
    ids, vectors, meta = read_output(tmp_path / output)
    good = [row for i, row in enumerate(rows) if i not in (7, 50, 60)]
    assert ids == [row["doc_id"] for row in good]
    expected, _ = HashEmbedder().embed([row["text"] for row in good])
    assert np.array_equal(vectors, expected)
    assert meta["model"] == "hash" and meta["model_fingerprint"] == "f" * 32
    rejects_path = tmp_path / (output + ".rejects.jsonl" if output.endswith(".parquet") else output + "/rejects.jsonl")
    rejects = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    assert [(r["position"], r["id"], r["status"]) for r in rejects] == [
        (7, "doc-00007", 400),
        (50, "doc-00050", 400),
        (60, "doc-00060", 400),
    ]
    assert "BAD" in rejects[0]["error"] and "no text" in rejects[2]["error"]
    # every good text was sent, and computed once: the refused requests were split until the bad ones stood alone
    accepted = [t for request in embedder.requests for t in request if "BAD" not in t]
    computed = {t for request in embedder.requests if not any("BAD" in t for t in request) for t in request}
    assert computed == {row["text"] for row in good}
    assert len(accepted) >= len(computed) and summary.duplicates >= 1
    assert (summary.records, summary.embedded, summary.rejected) == (95, 92, 3)


def test_requests_are_sized_by_tokens_not_items(tmp_path):
    rows = [{"doc_id": str(i), "text": ("word " * (4 if i % 2 else 200)) + str(i)} for i in range(40)]
    _, embedder = run_job(tmp_path, rows, "out.parquet", batch_tokens=300, chunk_size=40)
    sizes = [len(request) for request in embedder.requests]
    assert max(sizes) > 5 and min(sizes) == 1  # many short texts share a request; a long one goes alone


def test_a_job_stopped_twice_continues_to_the_output_of_one_that_never_stopped(tmp_path):
    rows = corpus(200)
    (tmp_path / "whole").mkdir()
    run_job(tmp_path / "whole", rows, "out.parquet")
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for fail_after in (4, 9):
        with pytest.raises(JobFailed):
            run_job(resumed, rows, "out.parquet", HashEmbedder(fail_after=fail_after))
    summary, embedder = run_job(resumed, rows, "out.parquet")
    assert summary.skipped > 0 and summary.records == 200
    first = read_output(tmp_path / "whole" / "out.parquet")
    again = read_output(resumed / "out.parquet")
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    assert not (resumed / "out.parquet.parts").exists()
    # run again with the same arguments: done already, nothing sent
    assert run_job(resumed, rows, "out.parquet")[0] is None


def test_a_job_refuses_to_continue_with_other_arguments(tmp_path):
    rows = corpus(50)
    with pytest.raises(JobFailed):
        run_job(tmp_path, rows, "out.parquet", HashEmbedder(fail_after=2))
    with pytest.raises(JobFailed, match="precision: was 'float32', now 'int8'.*--restart"):
        run_job(tmp_path, rows, "out.parquet", precision="int8")
    summary, _ = run_job(tmp_path, rows, "out.parquet", precision="int8", restart=True)
    assert summary.skipped == 0 and summary.embedded == 50


# ------------------------------------------------------------ the command against a real gunicorn
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("bulk") / "server.log"
    env = {"DTYPE": "float32", "MAX_INPUT_CHARS": "2000", "LOG_REQUESTS": "false"}
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


def bulk(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([COMMAND, "bulk", *map(str, args)], capture_output=True, text=True, timeout=600, **kwargs)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def served(server, texts: list[str], **body) -> np.ndarray:
    """/embed_text's vectors, 500 texts a request (under MAX_BATCH_ITEMS)."""
    rows = []
    for start in range(0, len(texts), 500):
        answer = requests.post(
            server.url + "/embed_text", json={"texts": texts[start : start + 500], **body}, timeout=120
        )
        rows.extend(answer.json()["embeddings"])
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, output",
    [("in.jsonl", "out.parquet"), ("in.csv", "out-numpy"), ("in.parquet", "out.parquet"), ("in.txt", "out-numpy")],
)
def test_the_command_embeds_every_format_as_embed_text_does(server, tmp_path, name, output):
    rows = corpus(60, seed=1)
    path = write_input(tmp_path / name, rows)
    id_args = [] if name == "in.txt" else ["--id-field", "doc_id"]
    done = bulk(path, tmp_path / output, "--url", server.url, *id_args, "--chunk-size", "25", "--json")
    summary = json.loads(done.stdout)
    assert (summary["records"], summary["embedded"], summary["rejected"]) == (60, 60, 0)
    ids, vectors, meta = read_output(tmp_path / output)
    assert ids == ([row["doc_id"] for row in rows] if id_args else [str(i) for i in range(60)])
    expected = served(server, [row["text"] for row in rows])
    assert np.allclose(vectors, expected, atol=1e-5)
    fingerprint = requests.get(server.url + "/info", timeout=30).json()["model_sha"]
    assert meta["model"] == "all-MiniLM-L6-v2" and meta["model_fingerprint"] == fingerprint and len(fingerprint) == 32


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float16", "int8", "ubinary"])
def test_stored_precisions_are_the_servers(server, tmp_path, precision):
    rows = corpus(30, seed=2)
    path = write_input(tmp_path / "in.jsonl", rows)
    bulk(path, tmp_path / "out.parquet", "--url", server.url, "--precision", precision, "--quiet")
    table = pq.read_table(tmp_path / "out.parquet")
    stored = np.asarray(table.column("embedding").to_pylist())
    texts = [row["text"] for row in rows]
    if precision == "float16":
        assert table.schema.field("embedding").type.value_type == pa.float16()
        assert np.allclose(stored, served(server, texts), atol=2e-3)
    else:
        answer = requests.post(
            server.url + "/embed_text",
            json={"texts": texts, "precision": precision, "encoding_format": "base64"},
            timeout=60,
        ).json()
        import base64

        dtype = np.int8 if precision == "int8" else np.uint8
        expected = np.stack([np.frombuffer(base64.b64decode(row), dtype=dtype) for row in answer["embeddings"]])
        assert np.array_equal(stored, expected)


@pytest.mark.slow
def test_records_the_server_refuses_go_to_the_rejects_file_with_its_error(server, tmp_path):
    rows = corpus(40, seed=3)
    for index in (5, 33):
        rows[index]["text"] = "far too long " * 200  # over MAX_INPUT_CHARS=2000
    path = write_input(tmp_path / "in.jsonl", rows)
    done = bulk(path, tmp_path / "out.parquet", "--url", server.url, "--id-field", "doc_id", "--json")
    assert json.loads(done.stdout)["rejected"] == 2
    rejects = [json.loads(line) for line in (tmp_path / "out.parquet.rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejects] == ["doc-00005", "doc-00033"] and {r["status"] for r in rejects} <= {400, 413}
    assert all("MAX_INPUT_CHARS" in r["error"] or "2000" in r["error"] for r in rejects)
    ids, vectors, _ = read_output(tmp_path / "out.parquet")
    assert ids == [row["doc_id"] for i, row in enumerate(rows) if i not in (5, 33)]


@pytest.mark.slow
def test_sigkilled_three_times_and_resumed_the_output_equals_an_uninterrupted_run(server, tmp_path):
    rows = corpus(1200, seed=4)
    path = write_input(tmp_path / "in.jsonl", rows)
    common = ["--url", server.url, "--id-field", "doc_id", "--chunk-size", "50", "--quiet"]
    bulk(path, tmp_path / "whole.parquet", *common)
    target = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.parts"
    for round_, at_least in enumerate((2, 8, 15)):
        job = subprocess.Popen([COMMAND, "bulk", str(path), str(target), *common], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        # killed once it has written `at_least` chunks in all (a different point each round), mid-chunk or not
        while len(list(parts.glob("part-*.parquet"))) < at_least and job.poll() is None:
            assert time.monotonic() < deadline, f"round {round_}: no progress"
            time.sleep(0.02)
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
        assert not target.exists()  # not finished: the output appears only whole
    bulk(path, target, *common)
    whole, killed = read_output(tmp_path / "whole.parquet"), read_output(target)
    assert killed[0] == whole[0] and len(killed[0]) == 1200
    assert np.allclose(killed[1], whole[1], atol=1e-5)
    assert not parts.exists()


@pytest.mark.slow
@pytest.mark.extended
def test_two_instances_share_the_job_and_one_restarted_mid_job_loses_nothing(server, tmp_path):
    rows = corpus(3000, seed=5)
    path = write_input(tmp_path / "in.jsonl", rows)
    second = GunicornProcess({"DTYPE": "float32", "LOG_REQUESTS": "false"}, workers=1)
    with second:
        port = second.port
        args = [path, tmp_path / "out.parquet", "--url", server.url, "--url", second.url, "--chunk-size", "100"]
        job = subprocess.Popen([COMMAND, "bulk", *map(str, args), "--json"], stdout=subprocess.PIPE, text=True)
        parts = tmp_path / "out.parquet.parts"
        while len(list(parts.glob("part-*.parquet"))) < 3:
            assert job.poll() is None
            time.sleep(0.02)
        assert second.metric("embedding_requests_total", route="/embed_text", method="POST", status="200") > 0
        second.stop()  # mid-job: its requests fail over to the other URL while it is down
    with GunicornProcess({"DTYPE": "float32", "LOG_REQUESTS": "false"}, workers=1, port=port):
        out, _ = job.communicate(timeout=600)
    assert job.returncode == 0
    assert json.loads(out)["embedded"] == 3000
    ids, vectors, _ = read_output(tmp_path / "out.parquet")
    assert ids == [str(i) for i in range(3000)]
    assert np.allclose(vectors, served(server, [row["text"] for row in rows]), atol=1e-5)


@pytest.mark.extended
@pytest.mark.slow
def test_local_mode_embeds_as_the_server_does(server, tmp_path):
    from app.config import default_model_path

    rows = corpus(50, seed=6)
    path = write_input(tmp_path / "in.jsonl", rows)
    env = {**os.environ, "DTYPE": "float32", "RUNTIME": "eager"}
    bulk(path, tmp_path / "local.parquet", "--local", default_model_path(), "--quiet", env=env)
    _, vectors, meta = read_output(tmp_path / "local.parquet")
    assert np.allclose(vectors, served(server, [row["text"] for row in rows]), atol=1e-5)
    assert meta["model_fingerprint"] == requests.get(server.url + "/info", timeout=30).json()["model_sha"]


def test_a_missing_input_stops_at_once_naming_it(tmp_path, capsys):
    from app.cli import main

    assert main(["bulk", str(tmp_path / "absent.jsonl"), str(tmp_path / "out"), "--url", "http://127.0.0.1:9"]) == 1
    assert "absent.jsonl: no such file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.extended
def test_sparse_output_of_a_splade_model_is_its_embed_text_sparse(tmp_path):
    from .tiny_models import tiny_splade

    model = tiny_splade(tmp_path / "splade")
    rows = corpus(40, seed=7)
    path = write_input(tmp_path / "in.jsonl", rows)
    with GunicornProcess({"MODEL_PATH": str(model), "LOG_REQUESTS": "false"}, workers=1) as splade:
        done = bulk(path, tmp_path / "out.parquet", "--url", splade.url, "--output-type", "sparse", "--json")
        assert json.loads(done.stdout)["embedded"] == 40
        numpy_output = bulk(path, tmp_path / "out-numpy", "--url", splade.url, "--output-type", "sparse", check=False)
        assert numpy_output.returncode == 1 and "Parquet" in numpy_output.stderr
        texts = [row["text"] for row in rows]
        answer = requests.post(
            splade.url + "/embed_text", json={"texts": texts, "output_types": ["sparse"]}, timeout=60
        ).json()
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("indices").type == pa.list_(pa.int32())
    for indices, values, expected in zip(
        table.column("indices").to_pylist(), table.column("values").to_pylist(), answer["sparse"]
    ):
        assert indices == expected["indices"] and np.allclose(values, expected["values"], atol=1e-4)


@pytest.mark.slow
@pytest.mark.extended
def test_colbert_output_of_bge_m3_is_its_embed_text_colbert(tmp_path):
    from .tiny_models import tiny_bge_m3

    model = tiny_bge_m3(tmp_path / "bge-m3-tiny")
    rows = corpus(30, seed=8)
    path = write_input(tmp_path / "in.jsonl", rows)
    with GunicornProcess({"MODEL_PATH": str(model), "DTYPE": "float32", "LOG_REQUESTS": "false"}, workers=1) as m3:
        done = bulk(path, tmp_path / "out.parquet", "--url", m3.url, "--output-type", "colbert", "--json")
        assert json.loads(done.stdout)["embedded"] == 30
        texts = [row["text"] for row in rows]
        answer = requests.post(m3.url + "/embed_text", json={"texts": texts, "output_types": ["colbert"]}, timeout=60)
    stored = pq.read_table(tmp_path / "out.parquet").column("colbert").to_pylist()
    for matrix, expected in zip(stored, answer.json()["colbert"]):
        assert np.asarray(matrix).shape == np.asarray(expected).shape
        assert np.allclose(matrix, expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.extended
def test_images_and_pdfs_by_path_are_embedded_as_embed_image_does_and_unreadable_ones_rejected(tmp_path):
    """A PDF's record gives a row per page (its id on each, the page in the `page` column); the same job in
    this process (--local, NumPy shards with pages.txt) writes the same rows."""
    import base64

    from PIL import Image

    from .test_pdf import make_pdf
    from .tiny_models import tiny_vision_model

    model = tiny_vision_model(tmp_path / "clip", "clip")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(9)
    rows = []
    for index in range(12):
        image = Image.fromarray(rng.integers(0, 255, (40 + index, 48, 3), dtype=np.uint8))
        image.save(pictures / f"{index}.png")
        rows.append({"doc_id": f"img-{index}", "text": f"pictures/{index}.png"})
    (pictures / "broken.png").write_bytes(b"not a png at all")
    rows.insert(4, {"doc_id": "broken", "text": "pictures/broken.png"})
    rows.insert(9, {"doc_id": "missing", "text": "pictures/missing.png"})
    (pictures / "paper.pdf").write_bytes(make_pdf(2))
    rows.insert(11, {"doc_id": "paper", "text": "pictures/paper.pdf"})
    path = write_input(tmp_path / "in.jsonl", rows)
    good = [row for row in rows if row["doc_id"] not in ("broken", "missing")]
    env = {"MODEL_PATH": str(model), "DTYPE": "float32", "LOG_REQUESTS": "false", "PDF_DPI": "72"}
    with GunicornProcess(env, workers=1) as clip:
        args = [path, tmp_path / "out.parquet", "--url", clip.url, "--images", "--id-field", "doc_id", "--json"]
        summary = json.loads(bulk(*args).stdout)
        encoded = [base64.b64encode((tmp_path / row["text"]).read_bytes()).decode() for row in good]
        answer = requests.post(clip.url + "/embed_image", json={"images": encoded}, timeout=60).json()
    assert (summary["embedded"], summary["rejected"]) == (14, 2)  # rows: 12 images and 2 pages
    expected_ids = [good[entry["input"]]["doc_id"] for entry in answer["pages"]]
    expected_pages = [entry["page"] for entry in answer["pages"]]
    assert expected_pages.count(None) == 12 and [p for p in expected_pages if p] == [1, 2]
    ids, vectors, meta = read_output(tmp_path / "out.parquet")
    assert ids == expected_ids and meta["images"] == "True"
    assert pq.read_table(tmp_path / "out.parquet").column("page").to_pylist() == expected_pages
    assert np.allclose(vectors, np.asarray(answer["embeddings"], dtype=np.float32), atol=1e-5)
    rejects = [json.loads(line) for line in (tmp_path / "out.parquet.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in rejects] == [("broken", 400), ("missing", 400)]
    assert "cannot read" in rejects[1]["error"]
    # the same job in this process
    local_env = {**os.environ, **env}
    bulk(path, tmp_path / "local", "--local", model, "--images", "--id-field", "doc_id", "--quiet", env=local_env)
    ids, vectors, _ = read_output(tmp_path / "local")
    assert ids == expected_ids
    pages = [int(line) if line else None for line in (tmp_path / "local" / "pages.txt").read_text().splitlines()]
    assert pages == expected_pages
    assert np.allclose(vectors, np.asarray(answer["embeddings"], dtype=np.float32), atol=1e-5)


@pytest.mark.slow
@pytest.mark.extended
def test_pages_of_a_visual_retriever_as_multi_vectors_in_this_process(tmp_path):
    """--local --images --output-type colbert with a ColQwen2: a multi-vector per page, as /embed_image's."""
    import base64

    from app import create_app
    from app.config import Settings

    from .test_pdf import make_pdf
    from .tiny_models import tiny_colqwen2

    model = tiny_colqwen2(tmp_path / "colqwen2")
    (tmp_path / "paper.pdf").write_bytes(make_pdf(2))
    path = write_input(tmp_path / "in.txt", [{"text": "paper.pdf"}, {"text": "https://example.com/a.png"}])
    env = {**os.environ, "DTYPE": "float32", "PDF_DPI": "72"}
    args = ["--local", model, "--images", "--output-type", "colbert", "--json"]
    summary = json.loads(bulk(path, tmp_path / "out.parquet", *args, env=env).stdout)
    assert (summary["embedded"], summary["rejected"]) == (2, 1)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == ["0", "0"] and table.column("page").to_pylist() == [1, 2]
    client = create_app(
        Settings.from_env({"MODEL_PATH": str(model), "DTYPE": "float32", "PDF_DPI": "72"})
    ).test_client()
    pdf = base64.b64encode((tmp_path / "paper.pdf").read_bytes()).decode()
    expected = client.post("/embed_image", json={"images": [pdf], "output_type": "colbert"}).get_json()["colbert"]
    for matrix, want in zip(table.column("colbert").to_pylist(), expected):
        assert np.allclose(matrix, want, atol=1e-5)


@pytest.mark.slow
@pytest.mark.extended
def test_audio_by_path_through_a_server_and_in_this_process(tmp_path):
    """--audio: clips by path to /embed_audio (and in this process), equal to /embed_audio's own answer; a file
    that is not audio is the record's rejection."""
    import base64

    from .test_audio import CLIPS, encoded
    from .tiny_models import tiny_clap

    model = tiny_clap(tmp_path / "clap")
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for index, clip in enumerate(CLIPS * 2):
        (clips / f"{index}.wav").write_bytes(encoded(clip, fmt="WAV", subtype="PCM_16"))
        rows.append({"doc_id": f"clip-{index}", "text": f"clips/{index}.wav"})
    (clips / "noise.bin").write_bytes(b"not audio at all" * 40)
    rows.insert(2, {"doc_id": "noise", "text": "clips/noise.bin"})
    path = write_input(tmp_path / "in.jsonl", rows)
    good = [row for row in rows if row["doc_id"] != "noise"]
    env = {"MODEL_PATH": str(model), "DTYPE": "float32", "LOG_REQUESTS": "false"}
    with GunicornProcess(env, workers=1) as clap:
        args = [path, tmp_path / "out.parquet", "--url", clap.url, "--audio", "--id-field", "doc_id", "--json"]
        summary = json.loads(bulk(*args).stdout)
        encoded_clips = [base64.b64encode((tmp_path / row["text"]).read_bytes()).decode() for row in good]
        expected = requests.post(clap.url + "/embed_audio", json={"audio": encoded_clips}, timeout=60).json()
    assert (summary["embedded"], summary["rejected"]) == (6, 1)
    ids, vectors, meta = read_output(tmp_path / "out.parquet")
    assert ids == [row["doc_id"] for row in good] and meta["audio"] == "True"
    assert np.allclose(vectors, np.asarray(expected["embeddings"], dtype=np.float32), atol=1e-5)
    rejects = [json.loads(line) for line in (tmp_path / "out.parquet.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in rejects] == [("noise", 400)]
    local_env = {**os.environ, **env}
    bulk(path, tmp_path / "local", "--local", model, "--audio", "--id-field", "doc_id", "--quiet", env=local_env)
    ids, vectors, _ = read_output(tmp_path / "local")
    assert ids == [row["doc_id"] for row in good]
    assert np.allclose(vectors, np.asarray(expected["embeddings"], dtype=np.float32), atol=1e-5)
