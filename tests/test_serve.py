"""`seqtag serve`: the HTTP API on a real server (uvicorn on loopback) with a real client (httpx), on tiny
models trained here. Answers equal the library's; concurrent requests share batches and get their own results;
bad input is a 4xx with a JSON detail and never reaches the 500 handler; SIGTERM finishes the request in flight."""
from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

import cli
import seqtag
from seqtag.errors import SeqtagError
from seqtag.serve import MicroBatcher, ServeSettings, create_app, serve, torch_threads_per_worker

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
FAST = {"train.progress_bar": False, "model.hidden_size": 8, "model.word_dim": 8, "model.num_layers": 1}
SENTENCES = ["Ada Lovelace visited Paris .", "Grace Hopper met Alan in Boston .", "Globex hired Marie Curie .",
             "It rained in Oslo .", "Marie met Alan in Paris .", "Globex visited Oslo ."]
REVIEWS = [("a good and fun film", "pos"), ("great acting , good story", "pos"), ("fun , great and moving", "pos"),
           ("a bad and boring film", "neg"), ("awful acting , bad story", "neg"), ("boring , awful and dull", "neg")]
VERSE = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


# ---------------------------------------------------------------------------
# Models and servers


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return seqtag.train("demo", out=str(tmp_path_factory.mktemp("tagger") / "run"), smoke=True).model_dir


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classifier")
    rows = "\n".join(["text,label"] + [f'"{text}",{label}' for text, label in REVIEWS * 2])
    (tmp / "train.csv").write_text(rows + "\n", encoding="utf-8")
    return seqtag.train("sentiment", train=str(tmp / "train.csv"), out=str(tmp / "run"), smoke=True,
                        **FAST, **{"model.char_hidden": 4, "model.char_dim": 4}).model_dir


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    (tmp / "verse.txt").write_text(VERSE * 8, encoding="utf-8")
    return seqtag.train("char-lm", train=str(tmp / "verse.txt"), out=str(tmp / "run"), smoke=True, **FAST).model_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _running(model_dir, **settings):
    """A real uvicorn server on loopback in a thread of this process (so a test can reach its app), and an
    httpx client for it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        app = create_app(ServeSettings(str(model_dir), port=port, **settings))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                yield app, client
        finally:
            server.should_exit = True
            thread.join(30)


# Small limits, so that the over-limit bodies stay small; the good requests of the tests fit well within them.
LIMITS = {"max_body_bytes": 20_000, "max_text_chars": 200, "max_items": 8}


@pytest.fixture(scope="module")
def tagger_server(tagger_dir):
    with _running(tagger_dir, **LIMITS) as running:
        yield running


def _as_json(results) -> list | dict:
    """What the server sends: the results' to_dict() through JSON (tuples become lists)."""
    return json.loads(json.dumps([r.to_dict() for r in results] if isinstance(results, list) else results.to_dict()))


def _counters(client) -> dict:
    return client.get("/health").json()


# ---------------------------------------------------------------------------
# Health, metadata, the OpenAPI page


def test_health_metadata_and_openapi_describe_the_model(tagger_server, tagger_dir):
    app, client = tagger_server
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["task"] == "tagging"
    assert {"requests", "batches", "in_flight", "internal_errors", "pid", "torch_threads"} <= set(health.json())
    metadata = client.get("/metadata").json()
    tagger = seqtag.load(tagger_dir)
    assert metadata["task"] == "tagging" and metadata["labels"] == tagger.labels
    assert metadata["seqtag_version"] == seqtag.__version__
    assert metadata["model_path"] == str(Path(tagger_dir).resolve())
    assert metadata["metrics"] == json.loads(json.dumps(tagger.metrics)) and "dev" in metadata["metrics"]
    assert metadata["finetune"] is None, "a model trained from scratch has no parent"
    assert metadata["limits"]["max_items"] == LIMITS["max_items"]
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/score", "/generate", "/health", "/metadata"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/PredictRequest")
    request = schema["components"]["schemas"]["PredictRequest"]
    assert set(request["properties"]) == {"text", "texts", "sentences", "top_k"}
    assert all(request["properties"][key].get("description") for key in request["properties"])
    assert set(schema["components"]["schemas"]["GenerateRequest"]["properties"]) == {
        "prompt", "max_tokens", "temperature", "top_k", "top_p", "seed", "greedy"}
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_metadata_reports_a_fine_tuned_models_lineage(tagger_dir, tmp_path):
    result = seqtag.finetune(tagger_dir, train=str(ROOT / "recipes/data/demo.dev.conll"), out=str(tmp_path / "tuned"),
                             smoke=True)
    with _running(result.model_dir) as (_, client):
        lineage = client.get("/metadata").json()["finetune"]
    saved = json.loads((Path(result.model_dir) / "config.json").read_text())["finetune"]
    assert lineage == saved and lineage["parent"]["path"] == str(Path(tagger_dir).resolve())


# ---------------------------------------------------------------------------
# /predict answers what the library answers


def test_tagger_answers_equal_the_library_for_text_texts_and_sentences(tagger_server, tagger_dir):
    _, client = tagger_server
    tagger = seqtag.load(tagger_dir)
    one = client.post("/predict", json={"text": SENTENCES[0]})
    assert one.status_code == 200 and one.json() == {"result": _as_json(tagger.predict(SENTENCES[0]))}
    many = client.post("/predict", json={"texts": SENTENCES})
    assert many.json() == {"results": _as_json(tagger.predict(SENTENCES))}
    tokens = [sentence.split() for sentence in SENTENCES]
    pretokenized = client.post("/predict", json={"sentences": tokens})
    assert pretokenized.json() == {"results": _as_json(tagger.predict(tokens))}
    assert pretokenized.json()["results"][0]["offsets"] is None
    empty = client.post("/predict", json={"texts": ["", "Oslo"]}).json()["results"]
    assert empty[0]["tokens"] == [] and empty[1]["tokens"] == ["Oslo"], "an empty text is an empty result"


def test_classifier_answers_equal_the_library_with_top_k(classifier_dir):
    classifier = seqtag.load(classifier_dir)
    texts = [text for text, _ in REVIEWS]
    with _running(classifier_dir) as (_, client):
        assert client.post("/predict", json={"text": texts[0]}).json() == {"result": _as_json(classifier.predict(texts[0]))}
        ranked = client.post("/predict", json={"texts": texts, "top_k": 1}).json()
        assert ranked == {"results": _as_json(classifier.predict(texts, top_k=1))}
        assert all(len(result["top_k"]) == 1 for result in ranked["results"])
        refused = client.post("/predict", json={"sentences": [["a", "film"]]})
        assert refused.status_code == 400 and '"text" or "texts"' in refused.json()["detail"]
        assert client.get("/metadata").json()["labels"] == classifier.labels


# ---------------------------------------------------------------------------
# Micro-batching


async def _concurrently(port: int, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        return await asyncio.gather(*(client.post("/predict", json=body) for body in bodies))


def _close(got, expected) -> bool:
    """Equal, but for floats within 1e-5: a sentence batched with others may differ in the last float bits."""
    if isinstance(expected, float):
        return got == pytest.approx(expected, abs=1e-5)
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(_close(got[k], expected[k]) for k in got)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(_close, got, expected))
    return got == expected


@pytest.mark.parametrize("wait_ms", [200, 0])
def test_concurrent_requests_get_their_own_results_batched_only_when_batching_is_on(tagger_dir, wait_ms):
    tagger = seqtag.load(tagger_dir)
    # 16 requests of one to three sentences each, all different, sent at once.
    bodies = [{"texts": [f"{SENTENCES[i % 6]} {i}" for i in range(n, n + 1 + n % 3)]} for n in range(16)]
    with _running(tagger_dir, batch_wait_ms=wait_ms) as (app, client):
        before = _counters(client)
        replies = asyncio.run(_concurrently(client.base_url.port, bodies))
        after = _counters(client)
    for body, reply in zip(bodies, replies):
        assert reply.status_code == 200
        assert _close(reply.json()["results"], _as_json(tagger.predict(body["texts"]))), "each gets its own results"
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 16 and after["in_flight"] == 0
    if wait_ms:
        assert batches < requests, f"16 concurrent requests ran in {batches} batches"
    else:
        assert batches == requests, "--batch-wait-ms 0 runs each request alone"


def test_the_batcher_keeps_to_the_token_budget_and_isolates_a_failing_request():
    calls = []

    def run(items, options):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [f"{item.upper()}{options or ''}" for item in items]

    async def scenario(wait_ms):
        batcher = MicroBatcher(run, wait_ms=wait_ms, token_budget=4)
        batcher.start()
        jobs = [batcher.submit(["a b", "c"]), batcher.submit(["d"]), batcher.submit(["e f g"]),
                batcher.submit(["bad"]), batcher.submit(["h"], options="!")]
        results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 10)  # none left waiting
        await asyncio.wait_for(batcher.close(), 10)
        return batcher, results

    batcher, results = asyncio.run(scenario(wait_ms=50))
    assert results[:3] == [["A B", "C"], ["D"], ["E F G"]] and results[4] == ["H!"]
    assert isinstance(results[3], ValueError), "only the request with the bad item fails"
    # 3 + 1 tokens fill the budget of 4; then e f g (3) + bad (1); the failed batch is run again one job at a time
    # (e f g, then bad); "h" has other options, so it never shares a call with the others.
    assert calls == [["a b", "c", "d"], ["e f g", "bad"], ["e f g"], ["bad"], ["h"]]
    assert (batcher.requests, batcher.batches, batcher.in_flight) == (5, 5, 0)
    calls.clear()
    batcher, results = asyncio.run(scenario(wait_ms=0))
    assert calls == [["a b", "c"], ["d"], ["e f g"], ["bad"], ["h"]], "no batching: each request alone"


def test_a_request_waits_for_company_until_the_budget_fills_and_close_runs_what_is_queued():
    async def late_company(wait_ms, budget=100, close_early=False):
        batcher = MicroBatcher(lambda items, options: items, wait_ms=wait_ms, token_budget=budget)
        batcher.start()
        start = time.monotonic()
        first = asyncio.ensure_future(batcher.submit(["x"]))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(["y"]))
        await asyncio.sleep(0)  # the second one is queued
        if close_early:
            await asyncio.wait_for(batcher.close(), 10)
        results = await asyncio.wait_for(asyncio.gather(first, second), 10)
        if not close_early:
            await batcher.close()
        return results, batcher.batches, time.monotonic() - start

    results, batches, _ = asyncio.run(late_company(wait_ms=1000))
    assert results == [["x"], ["y"]] and batches == 1, "50 ms later is within the first one's wait"
    assert asyncio.run(late_company(wait_ms=0))[1] == 2, "without a wait, each runs at once"
    _, batches, seconds = asyncio.run(late_company(wait_ms=5000, budget=2))
    assert batches == 1 and seconds < 2, "a full token budget ends the wait"
    results, batches, seconds = asyncio.run(late_company(wait_ms=5000, close_early=True))
    assert results == [["x"], ["y"]] and seconds < 2, "closing runs the queued requests at once"


# ---------------------------------------------------------------------------
# Bad input: a 4xx with a JSON detail, never the 500 handler

def _chunks(total: int):
    for _ in range(total // 1000):
        yield b" " * 1000


JSON = {"content-type": "application/json"}
BAD_INPUTS = {  # name: (route, body, headers, status, words the detail must hold)
    "malformed JSON": ("/predict", '{"text": ', JSON, 400, "not valid JSON"),
    "not UTF-8": ("/predict", b'{"text": "\xff"}', JSON, 400, "not UTF-8 (byte 0xff at position 10)"),
    "text is a number": ("/predict", '{"text": 5}', JSON, 422, "text: Input should be a valid string, got 5"),
    "texts is a string": ("/predict", '{"texts": "x"}', JSON, 422, "texts: Input should be a valid list"),
    "a sentence is a string": ("/predict", '{"sentences": ["a b"]}', JSON, 422, "sentences[0]: Input should be a valid list"),
    "an empty token": ("/predict", '{"sentences": [["a", ""]]}', JSON, 422, "sentences[0][1] is an empty token"),
    "an empty list": ("/predict", '{"texts": []}', JSON, 422, "texts is an empty list"),
    "no input": ("/predict", "{}", JSON, 422, "exactly one of text, texts, sentences; got none"),
    "two inputs": ("/predict", '{"text": "a", "texts": ["b"]}', JSON, 422, "got text, texts"),
    "an unknown key": ("/predict", '{"text": "a", "colour": 1}', JSON, 422, "unknown key 'colour'; /predict takes"),
    "top_k as a string": ("/predict", '{"text": "a", "top_k": "2"}', JSON, 422, "top_k"),
    "a list body": ("/predict", "[1, 2]", JSON, 422, "must be a JSON object"),
    "an empty body": ("/predict", "", JSON, 422, "The body is empty"),
    "deeply nested JSON": ("/predict", "[" * 5000 + "]" * 5000, JSON, 400, ""),
    "plain-text content type": ("/predict", '{"text": "a"}', {"content-type": "text/plain"}, 415, "application/json"),
    "no content type": ("/predict", '{"text": "a"}', {}, 415, "no Content-Type"),
    # Refused by its Content-Length before it is read, or, sent in chunks without one, once 20,000 bytes came.
    "body over the limit": ("/predict", json.dumps({"texts": ["words"] * 5000}), JSON, 413,
                            "body has 45,011 bytes; this server takes at most 20,000 (--max-body-bytes)"),
    "chunked body over the limit": ("/predict", _chunks(30_000), JSON, 413, "over 20,000 bytes (--max-body-bytes)"),
    "text over the limit": ("/predict", json.dumps({"text": "a" * 201}), JSON, 413, "--max-text-chars"),
    "sentence over the limit": ("/predict", json.dumps({"sentences": [["abcd"] * 41]}), JSON, 413, "sentences[0] has 204"),
    "too many texts": ("/predict", json.dumps({"texts": ["a"] * 9}), JSON, 413, "--max-items"),
    "top_k for a tagger": ("/predict", '{"text": "a", "top_k": 1}', JSON, 400, "drop \"top_k\""),
    "score on a tagger": ("/score", '{"text": "a"}', JSON, 400, "/score is for language models. POST /predict"),
    "generate on a tagger": ("/generate", '{"prompt": "a"}', JSON, 400, "POST /predict"),
}


def test_bad_inputs_get_a_4xx_with_a_json_detail_and_never_reach_the_500_handler(tagger_server):
    app, client = tagger_server
    internal_errors = app.state.internal_errors
    for name, (route, body, headers, status, words) in BAD_INPUTS.items():
        reply = client.post(route, content=body, headers=headers)
        assert reply.status_code == status, f"{name}: {reply.status_code} {reply.text}"
        detail = reply.json()["detail"]
        assert isinstance(detail, str) and words in detail, f"{name}: {detail}"
    assert client.get("/predict").status_code == 405 and client.get("/nowhere").json() == {"detail": "Not Found"}
    assert app.state.internal_errors == internal_errors == 0, "no bad input reached the 500 handler"
    assert client.post("/predict", json={"text": "Oslo"}).status_code == 200, "the server still answers"


def test_an_unexpected_error_is_a_short_json_500(tagger_server, monkeypatch):
    app, client = tagger_server

    def broken(items, options):
        raise RuntimeError("secret internals\nTraceback (most recent call last)")

    monkeypatch.setattr(app.state.batcher, "run", broken)
    before = _counters(client)["internal_errors"]
    reply = client.post("/predict", json={"text": "Oslo"})
    assert reply.status_code == 500
    assert reply.json() == {"detail": "Internal server error (RuntimeError); the server log has the details."}
    assert _counters(client)["internal_errors"] == before + 1


# ---------------------------------------------------------------------------
# Language models


def test_a_language_model_scores_and_generates_and_its_predict_names_them(lm_dir):
    lm = seqtag.load(lm_dir)
    with _running(lm_dir, batch_tokens=50) as (app, client):
        refused = client.post("/predict", json={"text": "To be"})
        assert refused.status_code == 400 and "/score" in refused.json()["detail"]
        assert "/generate" in refused.json()["detail"]
        assert client.post("/score", json={"text": "To be"}).json() == {"result": lm.score("To be")}
        assert client.post("/score", json={"texts": ["To be", "or not"]}).json() == {
            "results": [lm.score("To be"), lm.score("or not")]}
        settings = {"max_tokens": 12, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 2}
        generated = client.post("/generate", json={"prompt": "Or to", **settings})
        assert generated.json() == {"text": lm.generate("Or to", **settings)}
        assert client.post("/generate", json={"prompt": "To", "greedy": True, "max_tokens": 5}).json() == {
            "text": lm.generate("To", greedy=True, max_tokens=5)}
        for body, status, words in (({"temperature": 0}, 422, "temperature is 0"),  # the model's own check
                                    ({"top_p": 1.5}, 422, "top_p is 1.5"),
                                    ({"max_tokens": -1}, 422, "max_tokens is -1"),
                                    ({"max_tokens": 51}, 422, "at most 50 tokens per request (--batch-tokens)"),
                                    ({"prompt": "ZZZ"}, 422, "does not know"),
                                    ({"prompt": 3}, 422, "prompt: Input should be a valid string"),
                                    ({"seed": 1.5}, 422, "seed: Input should be a valid integer"),
                                    ({"greedy": "yes"}, 422, "greedy: Input should be a valid boolean"),
                                    ({"temperature": 1, "beam": 3}, 422, "unknown key 'beam'; /generate takes")):
            reply = client.post("/generate", json={"max_tokens": 5, **body})
            assert reply.status_code == status and words in reply.json()["detail"], (body, reply.text)
        reply = client.post("/score", json={"texts": ["x", 3]})
        assert reply.status_code == 422 and "texts[1]: Input should be a valid string" in reply.json()["detail"]
        assert app.state.internal_errors == 0


# ---------------------------------------------------------------------------
# The command, the optional extra, settings, processes


def test_the_command_passes_every_option_and_its_defaults_are_the_librarys(monkeypatch, tagger_dir):
    import seqtag.serve

    received = {}
    monkeypatch.setattr(seqtag.serve, "serve", lambda model_dir, **options: received.update(model_dir=model_dir, **options))
    result = runner.invoke(cli.app, ["serve", str(tagger_dir), "--host", "0.0.0.0", "--port", "9000", "--workers", "3",
                                     "--batch-wait-ms", "0", "--batch-tokens", "100", "--max-body-bytes", "5000",
                                     "--max-text-chars", "70", "--max-items", "4"])
    assert result.exit_code == 0, result.output
    assert received == {"model_dir": Path(tagger_dir), "host": "0.0.0.0", "port": 9000, "workers": 3,
                        "batch_wait_ms": 0.0, "batch_tokens": 100, "max_body_bytes": 5000, "max_text_chars": 70,
                        "max_items": 4}
    library = {f.name: f.default for f in fields(ServeSettings) if f.name != "model_dir"}
    command = {name: p.default for name, p in inspect.signature(inspect.unwrap(cli.serve)).parameters.items()
               if name != "model"}
    function = {name: p.default for name, p in inspect.signature(serve).parameters.items() if name != "model_dir"}
    assert command == library == function


def test_without_the_extra_seqtag_imports_and_serve_names_the_install_command(monkeypatch, tagger_dir):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    monkeypatch.delitem(sys.modules, "seqtag.serve")
    with pytest.raises(SeqtagError, match=r'pip install "seqtag\[serve\]"'):
        importlib.import_module("seqtag.serve")
    result = runner.invoke(cli.app, ["serve", str(tagger_dir)])
    assert result.exit_code == 2 and 'pip install "seqtag[serve]"' in result.output
    # Only seqtag/serve.py imports the extra's packages, so `import seqtag` and `seqtag.load` never need them.
    importers = set()
    for path in (ROOT / "seqtag").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(
                node, ast.ImportFrom) and not node.level else []
            if any(name.split(".")[0] in {"fastapi", "uvicorn", "starlette", "pydantic", "pydantic_core"} for name in names):
                importers.add(path.name)
    assert importers == {"serve.py"}


@pytest.mark.parametrize("change, words", [({"workers": 0}, "--workers is 0"), ({"port": 0}, "--port is 0"),
                                           ({"batch_wait_ms": -1}, "--batch-wait-ms is -1"),
                                           ({"max_items": 0}, "--max-items is 0"),
                                           ({"batch_tokens": 2.5}, "--batch-tokens is 2.5")])
def test_settings_out_of_range_are_errors_naming_the_option(change, words):
    with pytest.raises(SeqtagError, match=words.replace("-", r"\-").replace(".", r"\.")):
        ServeSettings("runs/demo/model", **change)


def test_torch_threads_share_the_cores_between_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [torch_threads_per_worker(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert torch_threads_per_worker(1) == 2, "an OMP_NUM_THREADS the user set caps it"


def _start(model_dir, log: Path, *options) -> tuple[subprocess.Popen, httpx.Client]:
    """`seqtag serve` in its own process, once it answers /health; its stderr (the logs) goes to `log`, its
    stdout to a pipe (a file rather than a pipe for the logs: a full pipe would stop the server)."""
    port = _free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "seqtag", "serve", str(model_dir), "--port", str(port),
                                    *options], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                   stdout=subprocess.PIPE, stderr=stderr)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "seqtag serve did not answer within 60 s"
        with contextlib.suppress(httpx.TransportError):
            if client.get("/health").status_code == 200:
                return process, client
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_and_exits_0(tagger_dir, tmp_path):
    process, client = _start(tagger_dir, tmp_path / "log", "--batch-wait-ms", "0")
    texts = [" ".join(["Ada Lovelace visited Paris on Monday ."] * 40)] * 300  # about 1 s of tagging
    reply = {}

    def slow_request():
        with httpx.Client(base_url=client.base_url, timeout=60) as own:
            reply["response"] = own.post("/predict", json={"texts": texts})
            reply["at"] = time.monotonic()

    sender = threading.Thread(target=slow_request)
    sender.start()
    while client.get("/health").json()["in_flight"] == 0:  # the request is in the batcher
        assert sender.is_alive(), reply
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    sender.join(60)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, (tmp_path / "log").read_text()
    response = reply["response"]
    assert response.status_code == 200 and len(response.json()["results"]) == 300 and reply["at"] > sent_at
    assert out == b"" and "POST /predict" in (tmp_path / "log").read_text(), "logs go to stderr"
    with pytest.raises(httpx.TransportError):
        client.get("/health")


def _spawned_children(pid: int) -> int:
    """How many processes multiprocessing spawned under `pid` (uvicorn's workers; not its resource tracker)."""
    count = 0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            count += parent == str(pid) and b"spawn_main" in (entry / "cmdline").read_bytes()
    return count


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts the worker processes in /proc")
def test_workers_each_load_the_model_with_their_share_of_the_cores(tagger_dir, tmp_path):
    process, client = _start(tagger_dir, tmp_path / "log", "--workers", "2")
    try:
        health = client.get("/health").json()
        assert health["torch_threads"] == 1, "OMP_NUM_THREADS=1 and cores // 2 workers, at least 1"
        assert client.get("/metadata").json()["workers"] == 2
        reply = client.post("/predict", json={"texts": SENTENCES})
        assert reply.json() == {"results": _as_json(seqtag.load(tagger_dir).predict(SENTENCES))}
        assert _spawned_children(process.pid) == 2, "two worker processes under uvicorn's supervisor"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0, (tmp_path / "log").read_text()
    assert _spawned_children(process.pid) == 0
