"""benchmark.py: its arithmetic, and its counts against a real running service."""

from __future__ import annotations

import ast
import base64
import io
import json
import shutil
import subprocess
import sys

import pytest

from .gunicorn_process import ROOT, GunicornProcess

sys.path.insert(0, str(ROOT))
import benchmark  # noqa: E402


# ------------------------------------------------------------------------- unit
def test_percentiles_match_linear_interpolation():
    latencies = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert benchmark.percentile(latencies, 50) == pytest.approx(55.0)
    assert benchmark.percentile(latencies, 90) == pytest.approx(91.0)
    assert benchmark.percentile(latencies, 99) == pytest.approx(99.1)
    assert benchmark.percentile(latencies, 0) == 10.0 and benchmark.percentile(latencies, 100) == 100.0
    assert benchmark.percentile([7.0], 99) == 7.0
    shuffled = [3.0, 1.0, 2.0]
    assert benchmark.percentile(shuffled, 50) == 2.0


def test_summary_counts_and_splits_errors():
    samples = [benchmark.Sample(0.010 * (i + 1), 2, 200, None, {"queue": 1.0, "inference": 4.0}) for i in range(8)] + [
        benchmark.Sample(0.001, 2, 503),
        benchmark.Sample(0.001, 2, 503),
        benchmark.Sample(0.001, 2, 400),
        benchmark.Sample(0.5, 2, None, "ConnectionResetError"),
    ]
    row = benchmark.summarise(samples, elapsed=2.0, concurrency=4, rate=None)
    assert row["requests"] == 12 and row["ok"] == 8 and row["errors"] == 4
    assert row["errors_by_status"] == {"503": 2, "400": 1}
    assert row["errors_by_exception"] == {"ConnectionResetError": 1}
    assert row["requests_per_s"] == 4.0 and row["items_per_s"] == 8.0
    assert row["p50_ms"] == pytest.approx(45.0) and row["max_ms"] == pytest.approx(80.0)
    assert row["server_queue_mean_ms"] == 1.0 and row["server_inference_p50_ms"] == 4.0
    assert "errors by status 400: 1, 503: 2" in benchmark.format_table([row])


def test_corpus_reading(tmp_path):
    paragraphs = tmp_path / "p.txt"
    paragraphs.write_text("First paragraph\nwraps here.\n\nSecond one.\n\n\nThird.")
    assert benchmark.load_texts(str(paragraphs)) == ["First paragraph wraps here.", "Second one.", "Third."]
    lines = tmp_path / "l.txt"
    lines.write_text("one\ntwo\nthree\n")  # no blank lines: one text per line
    assert benchmark.load_texts(str(lines)) == ["one", "two", "three"]
    assert len(benchmark.load_texts(None)) >= 10
    assert len({len(t) for t in benchmark.load_texts(None)}) >= 10  # varied lengths


def test_builtin_images_are_valid_pngs():
    from PIL import Image

    for uri in benchmark.load_images(None):
        header, data = uri.split(",", 1)
        assert header == "data:image/png;base64"
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        assert image.mode == "RGB" and image.size[0] >= 32


def test_request_shapes():
    assert benchmark.request_for("openai", "text", ["a"], None) == ("/v1/embeddings", {"input": ["a"]})
    assert benchmark.request_for("openai", "image", ["d"], "m") == (
        "/v1/embeddings",
        {"input": ["d"], "model": "m", "modality": "image"},
    )
    assert benchmark.request_for("native", "text", ["a"], None) == ("/embed_text", {"texts": ["a"]})
    assert benchmark.request_for("native", "image", ["d"], None) == ("/embed_image", {"images": ["d"]})


def test_bad_arguments_are_refused():
    for argv in (["--concurrency", "0"], ["--concurrency", "a,b"], ["--batch", "0"], ["--rate", "-1"]):
        with pytest.raises(SystemExit):
            benchmark.parse_args(argv)
    assert benchmark.parse_args(["--concurrency", "1,8,32"]).levels == [1, 8, 32]


def test_plot_without_matplotlib_is_refused_before_the_sweep(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--plot", "sweep.png", "--url", "http://127.0.0.1:9"])  # nothing listens there
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--help"])
    assert "(default: http://localhost:8080)" in capsys.readouterr().out


def test_it_imports_nothing_from_the_app():
    tree = ast.parse((ROOT / "benchmark.py").read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "app" not in imported
    third_party = imported - set(sys.stdlib_module_names) - {""}
    assert third_party <= {"tqdm", "matplotlib"}  # both optional, imported lazily


# ------------------------------------------------------------ against a real service
def run_benchmark(*argv: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmark.py"), "--json", "--quiet", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("bench") / "server.log"
    with GunicornProcess({"THREADS": "8"}, workers=1, log_path=log) as proc:
        yield proc


@pytest.mark.slow
def test_counts_add_up_and_match_what_the_server_saw(server):
    before = server.metric("embedding_requests_total", route="/embed_text", method="POST", status="200")
    result = run_benchmark("--url", server.url, "--concurrency", "3", "--requests", "30", "--batch", "2")
    (row,) = result["results"]
    assert row["requests"] == 30 == row["ok"] + row["errors"] and row["errors"] == 0
    after = server.metric("embedding_requests_total", route="/embed_text", method="POST", status="200")
    assert after - before == 30
    assert row["items_per_s"] == pytest.approx(2 * row["requests_per_s"])
    assert row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["server_inference_mean_ms"] > 0 and "server_queue_p50_ms" in row


@pytest.mark.slow
def test_sweep_openai_endpoint_csv_and_plot(server, tmp_path):
    csv_file, png = tmp_path / "out.csv", tmp_path / "out.png"
    argv = [
        "--url",
        server.url,
        "--concurrency",
        "1,2",
        "--requests",
        "8",
        "--endpoint",
        "openai",
        "--csv",
        str(csv_file),
    ]
    if _has_matplotlib():
        argv += ["--plot", str(png)]
    result = run_benchmark(*argv)
    assert [r["concurrency"] for r in result["results"]] == [1, 2]
    assert all(r["ok"] == 8 for r in result["results"])
    assert csv_file.read_text().count("\n") == 3
    if _has_matplotlib():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_open_loop_sends_at_the_scheduled_rate(server):
    result = run_benchmark("--url", server.url, "--rate", "20", "--duration", "1.5", "--concurrency", "4")
    (row,) = result["results"]
    assert 28 <= row["requests"] <= 31 and row["errors"] == 0 and row["rate"] == 20


@pytest.mark.extended
@pytest.mark.slow
def test_503s_from_a_full_queue_are_counted_by_status(tmp_path):
    corpus = tmp_path / "long.txt"
    corpus.write_text("\n\n".join(f"paragraph {i} " + "words that take time to embed " * 60 for i in range(20)))
    env = {"MAX_QUEUE": "1", "THREADS": "16"}
    with GunicornProcess(env, workers=1, log_path=tmp_path / "log") as server:
        result = run_benchmark(
            "--url", server.url, "--concurrency", "16", "--requests", "64", "--batch", "16", "--corpus", str(corpus)
        )
    (row,) = result["results"]
    assert row["requests"] == 64 == row["ok"] + row["errors"]
    assert row["errors_by_status"].get("503", 0) > 0 and row["ok"] > 0
    assert set(row["errors_by_status"]) == {"503"} and row["errors_by_exception"] == {}


# ------------------------------------------------------------------ ab and wrk recipes
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ab") is None, reason="ab (apache2-utils) is not installed")
def test_ab_recipe_from_the_readme(server):
    out = subprocess.run(
        [
            "ab",
            "-k",
            "-n",
            "60",
            "-c",
            "4",
            "-p",
            str(ROOT / "bench/embed_text.json"),
            "-T",
            "application/json",
            server.url + "/embed_text",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "Complete requests:      60" in out
    assert "Failed requests:        0" in out and "Non-2xx" not in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize("env", [{}, {"BATCH": "4", "ENDPOINT": "openai"}])
def test_wrk_script_from_the_readme(server, env):
    import os

    out = subprocess.run(
        ["wrk", "-t1", "-c2", "-d2s", "-s", str(ROOT / "bench/wrk_embed.lua"), server.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, **env},
    ).stdout
    assert "non-2xx: 0, socket errors: 0" in out
    assert "p99 latency:" in out and float(out.split("texts/s: ")[1].split()[0]) > 0


# ------------------------------------------------------------ the cache: measured only when asked
def test_the_builtin_corpus_is_distinct_texts():
    texts = benchmark.builtin_corpus(2_000)
    assert len(set(texts)) == 2_000
    assert all(4 <= len(text.split()) <= 80 for text in texts)
    assert benchmark.load_texts(None)[:3] == benchmark.builtin_corpus()[:3]


@pytest.mark.slow
def test_this_service_computes_every_request_unless_cache_on(server, tmp_path):
    """By default the benchmark asks this service for `cache: false` (no X-Cache answer, no hit); with
    `--cache on` over a corpus of three texts it measures hits and says how many."""
    lookups = [server.metric("embedding_cache_lookups_total", result=result) for result in ("hit", "miss")]
    result = run_benchmark("--url", server.url, "--concurrency", "2", "--requests", "20")
    (row,) = result["results"]
    assert result["cache"] == "off" and row["ok"] == 20
    assert row["cache"] == {} and row["cache_hit_ratio"] is None
    assert [server.metric("embedding_cache_lookups_total", result=result) for result in ("hit", "miss")] == lookups
    corpus = tmp_path / "three.txt"
    corpus.write_text("one text\ntwo texts\nthree texts\n")
    cached = run_benchmark(
        "--url", server.url, "--requests", "30", "--corpus", str(corpus), "--cache", "on", "--concurrency", "1"
    )
    (row,) = cached["results"]
    assert cached["cache"] == "on" and row["cache_hit_ratio"] >= 0.8 and sum(row["cache"].values()) == 30


def test_another_server_is_sent_no_extra_field(tmp_path):
    """A server without this service's /health (TEI's is an empty 200) gets the bodies its API defines."""
    import http.server
    import threading

    bodies = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):  # noqa: N802
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            answer = json.dumps({"object": "list", "data": [{"embedding": [0.0], "index": 0}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    peer = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{peer.server_address[1]}"
        result = run_benchmark("--url", url, "--requests", "6", "--endpoint", "openai", "--concurrency", "2")
    finally:
        peer.shutdown()
    assert result["cache"] == "not this service" and result["results"][0]["ok"] == 6
    assert len(bodies) == 6 and all(set(body) == {"input"} for body in bodies)
