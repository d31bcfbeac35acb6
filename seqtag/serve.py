"""`seqtag serve MODEL`: a saved model behind an HTTP JSON API (FastAPI on uvicorn).

    POST /predict   taggers and classifiers: {"text": "..."} → {"result": {...}}; {"texts": [...]} or, for
                    taggers, pre-tokenized {"sentences": [[token, ...], ...]} → {"results": [...]}, in input
                    order. Each object is the one `seqtag predict` writes as a JSON line (`to_dict()`);
                    classifiers take an optional "top_k".
    POST /score     language models: {"text"} or {"texts"} → `LanguageModel.score` figures, in the same shapes
    POST /generate  language models: {"prompt", "max_tokens", "temperature", "top_k", "top_p", "seed",
                    "greedy"} → {"text": prompt + continuation}
    GET  /health    liveness, and this process's counters: requests, batches (model runs), internal errors
    GET  /metadata  task, labels, seqtag version, the model's path, metrics and fine-tuning lineage, the limits
    GET  /docs      the OpenAPI page (/openapi.json describes every request and answer)

Why micro-batching: a padded batch of 16 sentences costs about as much as one sentence on a CPU, so requests
that arrive within `batch_wait_ms` of the first one waiting are run together, up to `batch_tokens` tokens,
through one `model.predict` call, and each request gets its own slice of the results. The network runs in one
worker thread, so the event loop keeps accepting and parsing requests meanwhile, and the requests that queue
while a batch runs form the next batch without waiting.

Every bad input is a 4xx with a JSON {"detail": "..."} saying what was wrong and what to send instead; an
unexpected exception is a JSON 500 with a short message (the traceback goes to the server log only).

Layer: serving, above prediction and below training: the model comes from `loading.load`, and nothing here
imports Lightning or the training modules. FastAPI and uvicorn are the optional extra `seqtag[serve]`; only
this module imports them, so `import seqtag` works without them, and importing this module without them is a
SeqtagError naming the install command.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import os
import signal
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from .errors import SeqtagError

try:  # the optional extra; `import seqtag` never comes here
    import uvicorn
    from fastapi import Body, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, model_validator
    from pydantic_core import PydanticCustomError
    from starlette.datastructures import Headers
except ImportError as missing:
    raise SeqtagError(f"seqtag serve needs FastAPI and uvicorn, which are not installed here ({missing.name} is "
                      'missing); install them with pip install "seqtag[serve]".') from None

import torch

from .loading import load
from .process_state import kept_process_state
from .version import __version__

SETTINGS_VARIABLE = "SEQTAG_SERVE_SETTINGS"  # how `serve` hands its settings to worker processes (JSON)
APP_FACTORY = "seqtag.serve:app_from_environment"
# What /predict reads beside raw texts, by task family: token lists (taggers) and a ranked top_k (classifiers).
# A language model answers /score and /generate instead.
PRETOKENIZED_TASKS = {"tagging"}
RANKED_TASKS = {"classification"}
LANGUAGE_MODEL_TASK = "lm"


@dataclass
class ServeSettings:
    """Everything `seqtag serve` is started with; each worker process gets a copy (as JSON, see `serve`)."""

    model_dir: str
    """The saved model directory to serve."""
    host: str = "127.0.0.1"
    """The address to listen on: 127.0.0.1 accepts this machine only, 0.0.0.0 every interface."""
    port: int = 8080
    """The TCP port."""
    workers: int = 1
    """Server processes, each with its own copy of the model and cores // workers torch threads."""
    batch_wait_ms: float = 5.0
    """How long the first request of a batch waits for others to join it; 0 runs each request alone."""
    batch_tokens: int = 8192
    """The most tokens (whitespace-separated words, or a sentence's tokens) one batch holds; a request larger
    than this runs alone. Also the most tokens /generate makes for one request."""
    max_body_bytes: int = 1_000_000
    """The largest request body accepted (413 above it)."""
    max_text_chars: int = 100_000
    """The longest text, sentence (its tokens joined by spaces) or prompt accepted (413 above it)."""
    max_items: int = 1000
    """The most texts or sentences in one request (413 above it)."""

    def __post_init__(self):
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise SeqtagError(f"--port is {self.port!r}; give a TCP port from 1 to 65535.")
        for option, value, meaning in (("--workers", self.workers, "server processes"),
                                       ("--batch-tokens", self.batch_tokens, "tokens per batch"),
                                       ("--max-body-bytes", self.max_body_bytes, "bytes per request body"),
                                       ("--max-text-chars", self.max_text_chars, "characters per text"),
                                       ("--max-items", self.max_items, "texts per request")):
            if not isinstance(value, int) or value < 1:
                raise SeqtagError(f"{option} is {value!r}; it must be 1 or more ({meaning}).")
        if not isinstance(self.batch_wait_ms, (int, float)) or not 0 <= self.batch_wait_ms <= 10_000:
            raise SeqtagError(f"--batch-wait-ms is {self.batch_wait_ms!r}; give milliseconds from 0 (no batching) "
                              "to 10000 (5 is a good start).")


# -- requests and answers (FastAPI documents them on /docs and /openapi.json) ----------------------------------

Token = Annotated[str, Field(min_length=1)]
TEXT_ITEMS = ("text", "texts")
PREDICT_ITEMS = ("text", "texts", "sentences")


def _exactly_one(request: BaseModel, names: Sequence[str]) -> None:
    given = [name for name in names if getattr(request, name) is not None]
    if len(given) != 1:
        raise PydanticCustomError("one_input", "give exactly one of {names}; got {given}",
                                  {"names": ", ".join(names), "given": ", ".join(given) or "none"})


class PredictRequest(BaseModel):
    """Exactly one of `text`, `texts` or `sentences` (taggers only); `top_k` for classifiers."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = Field(None, description='One raw text, answered with {"result": {...}}. A tagger splits '
                                               "it into tokens and gives each its character offsets.")
    texts: list[str] | None = Field(None, min_length=1, description='Raw texts, answered with {"results": [...]} '
                                                                    "in the same order.")
    sentences: list[list[Token]] | None = Field(
        None, min_length=1, description='Taggers: pre-tokenized sentences, answered with {"results": [...]} in the '
                                        'same order ("offsets" is null).')
    top_k: int | None = Field(None, ge=1, description="Classifiers: how many ranked labels to list in each "
                                                      'result\'s "top_k" (default: every label).')

    @model_validator(mode="after")
    def _one_input(self):
        _exactly_one(self, PREDICT_ITEMS)
        return self


class ScoreRequest(BaseModel):
    """Exactly one of `text` or `texts`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = Field(None, description='One text, answered with {"result": {...}}.')
    texts: list[str] | None = Field(None, min_length=1, description='Texts, answered with {"results": [...]} in '
                                                                    "the same order.")

    @model_validator(mode="after")
    def _one_input(self):
        _exactly_one(self, TEXT_ITEMS)
        return self


class GenerateRequest(BaseModel):
    """Sampling settings as `seqtag generate` takes them; the model checks their ranges (422 when out of range)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field("", description="Text to continue (default: start a new line).")
    max_tokens: int = Field(200, description="Tokens to generate (at most the server's --batch-tokens).")
    temperature: float = Field(1.0, description="Softmax temperature, > 0 (lower is safer).")
    top_k: int | None = Field(None, description="Sample only from the K most likely tokens.")
    top_p: float | None = Field(None, description="Sample only from the nucleus of probability P, in (0, 1].")
    seed: int | None = Field(None, description="Seed for a repeatable sample.")
    greedy: bool = Field(False, description="Always take the most likely token (no sampling).")


REQUEST_MODELS = {"/predict": PredictRequest, "/score": ScoreRequest, "/generate": GenerateRequest}
EXAMPLE_BODIES = {"/predict": '{"text": "Ada Lovelace visited Paris."}', "/score": '{"text": "To be, or not to be"}',
                  "/generate": '{"prompt": "ROMEO:", "max_tokens": 100}'}


class OneResult(BaseModel):
    result: dict[str, Any] = Field(description="What `seqtag predict` writes as one JSON line (or LanguageModel.score's figures).")


class ManyResults(BaseModel):
    results: list[dict[str, Any]] = Field(description="One object per text or sentence, in request order.")


class Generated(BaseModel):
    text: str = Field(description="The prompt followed by the generated continuation.")


class ErrorReply(BaseModel):
    detail: str = Field(description="What was wrong with the request and what to send instead.")


ERRORS = {status: {"model": ErrorReply, "description": meaning} for status, meaning in (
    (400, "Not valid JSON, or a request this model cannot answer (for example sentences for a classifier)"),
    (413, "Over a limit: --max-body-bytes, --max-text-chars or --max-items"),
    (415, "The body is not sent as application/json"),
    (422, "A key, type or value that does not fit (the detail names it)"))}


# -- micro-batching -------------------------------------------------------------------------------------------

def rough_tokens(item: str | Sequence[str]) -> int:
    """A request item's size for the token budget: whitespace words of a text, or a sentence's tokens (≥ 1)."""
    return max(1, len(item.split()) if isinstance(item, str) else len(item))


@dataclass
class _Job:
    items: list                 # texts or token lists of one request
    options: Any                # what must match for two jobs to share a model call (a classifier's top_k)
    tokens: int
    arrived: float              # event-loop time
    done: asyncio.Future


class MicroBatcher:
    """Runs requests' items through `run(items, options) → one result per item` in a single worker thread,
    merging the requests that arrive within `wait_ms` of the first one waiting (up to `token_budget` tokens)
    into one call, and hands each request its own slice of the results.

    `wait_ms=0` runs each request alone. Counters: `requests` (jobs finished), `batches` (calls of `run`) and
    `in_flight` (jobs submitted and not finished). `close()` finishes every job already queued before it returns."""

    def __init__(self, run: Callable[[list, Any], list], wait_ms: float = 5.0, token_budget: int = 8192):
        self.run = run
        self.wait_ms = wait_ms
        self.token_budget = token_budget
        self.requests = 0
        self.batches = 0
        self.in_flight = 0
        self._pending: deque[_Job] = deque()
        self._queued_tokens = 0
        self._closing = False

    def start(self) -> None:
        """Start the batching loop on the running event loop (a FastAPI lifespan's startup)."""
        self._has_work, self._stop_waiting = asyncio.Event(), asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqtag-model")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Finish the queued jobs, then stop the loop and the model thread."""
        self._closing = True
        self._has_work.set()
        self._stop_waiting.set()  # a batch waiting for company runs now
        await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, items: list, options: Any = None) -> list:
        """The results of `run` for these items, once the batch holding them has run."""
        if self._closing:
            raise HTTPException(503, "The server is shutting down; send the request again to another server.")
        loop = asyncio.get_running_loop()
        job = _Job(items, options, sum(map(rough_tokens, items)), loop.time(), loop.create_future())
        self._pending.append(job)
        self.in_flight += 1
        self._queued_tokens += job.tokens
        self._has_work.set()
        if self._queued_tokens >= self.token_budget:
            self._stop_waiting.set()
        return await job.done

    async def call(self, function: Callable[[], Any]) -> Any:
        """Run `function` alone in the model thread (work that is not batched: scoring, generation), after the
        batches already handed to it."""
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        finally:
            self.requests, self.batches, self.in_flight = self.requests + 1, self.batches + 1, self.in_flight - 1

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._has_work.clear()
                await self._has_work.wait()
                continue
            # The first job waits for company until its own deadline; jobs that queued while the model was busy
            # are past theirs and run at once. A full token budget, or shutting down, ends the wait early.
            wait = self._pending[0].arrived + self.wait_ms / 1000 - loop.time()
            if self.wait_ms and wait > 0 and not self._closing and self._queued_tokens < self.token_budget:
                self._stop_waiting.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_waiting.wait(), wait)
            batch = self._take_batch()
            try:
                await self._run_batch(batch)
            except Exception as error:  # a bug here must fail these requests, not stop the loop for all later ones
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(error)

    def _take_batch(self) -> list[_Job]:
        """The first job, and the next ones while they fit in the token budget (none when batching is off)."""
        batch = [self._pending.popleft()]
        tokens = batch[0].tokens
        while self.wait_ms and self._pending and tokens + self._pending[0].tokens <= self.token_budget:
            tokens += self._pending[0].tokens
            batch.append(self._pending.popleft())
        self._queued_tokens -= tokens
        return batch

    async def _run_batch(self, batch: list[_Job]) -> None:
        groups: dict[Any, list[_Job]] = {}
        for job in batch:
            groups.setdefault(job.options, []).append(job)
        for options, jobs in groups.items():
            await self._run_together(jobs, options)

    async def _run_together(self, jobs: list[_Job], options: Any) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.run, items, options)
        except Exception as error:  # handed to the request, whose handler turns it into a reply
            self.batches += 1
            if len(jobs) > 1:  # one request's bad item must not fail the others: run each alone
                for job in jobs:
                    await self._run_together([job], options)
            else:
                self._finish(jobs[0], error=error)
            return
        self.batches += 1
        start = 0
        for job in jobs:
            self._finish(job, results=results[start:start + len(job.items)])
            start += len(job.items)

    def _finish(self, job: _Job, results: list | None = None, error: Exception | None = None) -> None:
        self.requests += 1
        self.in_flight -= 1
        if job.done.done():  # the request was cancelled (its client left)
            return
        if error is not None:
            job.done.set_exception(error)
        else:
            job.done.set_result(results)


def _model_runner(model) -> Callable[[list, Any], list]:
    """`run(items, top_k)` for a tagger or classifier: `model.predict` once, each result as its JSON object."""

    def run(items: list, top_k: int | None) -> list[dict]:
        results = model.predict(items) if top_k is None else model.predict(items, top_k=top_k)
        return [result.to_dict() for result in results]

    return run


# -- request checks and error replies ------------------------------------------------------------------------

def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BodyChecks:
    """Refuse a request body before the app reads it: one over `limit` bytes (413; by its Content-Length when
    the client sends one, else by counting the bytes as they arrive, as in a chunked upload), one not sent
    as JSON (415) or not UTF-8 (400). Checked here rather than in the endpoints, so an over-size body is never held whole in
    memory nor parsed."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, 413, f"The request body has {int(declared):,} bytes; this server "
                               f"takes at most {self.limit:,} (--max-body-bytes): send fewer or shorter texts per request.")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nobody to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, receive, send, 413, f"The request body is over {self.limit:,} bytes "
                                   "(--max-body-bytes): send fewer or shorter texts per request.")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not _is_json(headers.get("content-type")):
            given = headers.get("content-type")
            await self._refuse(scope, receive, send, 415, (f"Content-Type is {given!r}" if given else
                               "The request has no Content-Type") + "; send the body as JSON with Content-Type: "
                               "application/json (curl: -H 'Content-Type: application/json').")
            return
        try:  # JSON travels as UTF-8 (RFC 8259); say so rather than "cannot parse"
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            await self._refuse(scope, receive, send, 400, f"The body is not UTF-8 (byte {body[err.start]:#04x} at "
                               f"position {err.start}); send JSON encoded as UTF-8.")
            return
        replayed = False

        async def replay():  # the body read above, then the client's later messages (a disconnect)
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, detail: str) -> None:
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _where(location: Sequence) -> str:
    """("body", "sentences", 0, 1) → "sentences[0][1]"."""
    path = ""
    for part in location[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "the body"


def validation_detail(errors: Sequence[dict], route: str) -> tuple[int, str]:
    """(status, one readable message) for FastAPI's validation errors of a request to `route`."""
    example = EXAMPLE_BODIES.get(route, "{...}")
    messages = []
    for error in errors:
        kind, location = error.get("type", ""), tuple(error.get("loc", ()))
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            return 400, (f"The body is not valid JSON ({reason} at character {location[-1]}); send one JSON object, "
                         f"such as {example}.")
        if location == ("body",) and kind == "missing":
            messages.append(f"The body is empty; send one JSON object, such as {example}.")
        elif location == ("body",) and kind in ("model_attributes_type", "dict_type", "model_type"):
            messages.append(f"The body must be a JSON object, such as {example}; got {_short(error.get('input'))}.")
        elif kind == "extra_forbidden":
            keys = ", ".join(REQUEST_MODELS[route].model_fields) if route in REQUEST_MODELS else "other keys"
            messages.append(f"unknown key {location[-1]!r}; {route} takes {keys}.")
        elif kind == "too_short":
            messages.append(f"{_where(location)} is an empty list; give at least one item.")
        elif kind == "string_too_short":
            messages.append(f"{_where(location)} is an empty token; a token has at least one character.")
        elif kind.endswith("_type"):
            messages.append(f"{_where(location)}: {error.get('msg')}, got {_short(error.get('input'))}.")
        elif location == ("body",):  # a check of the body as a whole (exactly one input)
            message = str(error.get("msg", ""))
            messages.append(f"{message[:1].upper()}{message[1:]}.")
        else:
            messages.append(f"{_where(location)}: {error.get('msg')}.")
    return 422, " ".join(messages)


def _item_location(key: str, index: int) -> str:
    return key if key == "text" else f"{key}[{index}]"


def _check_sizes(items: list, key: str, settings: ServeSettings) -> None:
    """413 for a request with more items than --max-items, or an item longer than --max-text-chars."""
    if len(items) > settings.max_items:
        raise HTTPException(413, f"{key} holds {len(items):,} items; this server takes at most {settings.max_items:,} "
                                 "per request (--max-items): split them over several requests.")
    for index, item in enumerate(items):
        chars = len(item) if isinstance(item, str) else sum(map(len, item)) + max(0, len(item) - 1)
        if chars > settings.max_text_chars:
            raise HTTPException(413, f"{_item_location(key, index)} has {chars:,} characters; this server takes at "
                                     f"most {settings.max_text_chars:,} per text (--max-text-chars): cut it into "
                                     "shorter texts.")


# -- the app --------------------------------------------------------------------------------------------------

def _model_config(path: Path) -> dict:
    """config.json as saved (the lineage of a fine-tuned model is there; the predictor does not keep it)."""
    return json.loads((path / "config.json").read_text(encoding="utf-8"))


def create_app(settings: ServeSettings, model=None) -> FastAPI:
    """The FastAPI app serving `model` (loaded from `settings.model_dir` when not given)."""
    model = model if model is not None else load(settings.model_dir)
    path = Path(model.path or settings.model_dir).resolve()
    config = _model_config(path)
    task = model.task
    batcher = MicroBatcher(_model_runner(model), settings.batch_wait_ms, settings.batch_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:  # uvicorn calls this after the requests in flight have their answers; queued jobs finish too
            await batcher.close()

    app = FastAPI(title="seqtag serve", version=__version__, lifespan=lifespan,
                  description=f"A seqtag {task} model ({path}) over HTTP. Errors are JSON: "
                              '{"detail": "what was wrong and what to send instead"}.')
    app.state.model, app.state.settings, app.state.batcher = model, settings, batcher
    app.state.internal_errors = 0
    app.add_middleware(BodyChecks, limit=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        status, detail = validation_detail(error.errors(), request.url.path)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(SeqtagError)
    async def refused_by_the_model(request: Request, error: SeqtagError):
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        # Starlette raises the error again after this reply, and uvicorn logs its traceback; the client gets none.
        app.state.internal_errors += 1
        return JSONResponse({"detail": f"Internal server error ({type(error).__name__}); the server log has the "
                                       "details."}, status_code=500)

    def refuse_unless(served: bool, message: str) -> None:
        if not served:
            raise HTTPException(400, message)

    @app.post("/predict", response_model=None, responses={200: {"model": OneResult | ManyResults}, **ERRORS},
              summary="Tag or classify texts (taggers and classifiers)")
    async def predict(request: Annotated[PredictRequest, Body(openapi_examples={
            "text": {"value": {"text": "Ada Lovelace visited Paris."}},
            "texts": {"value": {"texts": ["Ada Lovelace visited Paris.", "It rained in Oslo."]}},
            "sentences": {"summary": "taggers", "value": {"sentences": [["Ada", "Lovelace"], ["in", "Oslo"]]}},
            "top_k": {"summary": "classifiers", "value": {"texts": ["a gorgeous , witty film"], "top_k": 1}}})]):
        """Each result is what `seqtag predict` writes as one JSON line: for a tagger tokens, labels,
        probabilities, offsets and spans; for a classifier label, probability, probabilities and top_k."""
        refuse_unless(task != LANGUAGE_MODEL_TASK, "This server holds a language model; /predict is for taggers "
                      "and classifiers. POST /score for the log-probability of texts, or /generate to continue a prompt.")
        if request.sentences is not None:
            refuse_unless(task in PRETOKENIZED_TASKS, f'This server holds a {task} model, which reads raw text: send '
                          '"text" or "texts" ("sentences", pre-tokenized input, is for taggers).')
        if request.top_k is not None:
            refuse_unless(task in RANKED_TASKS, f'"top_k" ranks a classifier\'s labels; this server holds a {task} '
                                                'model: drop "top_k".')
        key = next(name for name in PREDICT_ITEMS if getattr(request, name) is not None)
        items = [request.text] if key == "text" else getattr(request, key)
        _check_sizes(items, key, settings)
        results = await batcher.submit(items, request.top_k)
        return JSONResponse({"result": results[0]} if key == "text" else {"results": results})

    @app.post("/score", response_model=None, responses={200: {"model": OneResult | ManyResults}, **ERRORS},
              summary="Log-probability and perplexity of texts (language models)")
    async def score(request: ScoreRequest):
        """Each result is `LanguageModel.score(text)`: log_probability (natural log, after a line break),
        perplexity and tokens."""
        refuse_unless(task == LANGUAGE_MODEL_TASK, f"This server holds a {task} model; /score is for language "
                                                   "models. POST /predict.")
        key = "text" if request.text is not None else "texts"
        items = [request.text] if key == "text" else request.texts
        _check_sizes(items, key, settings)
        results = await batcher.call(lambda: [model.score(text) for text in items])
        return JSONResponse({"result": results[0]} if key == "text" else {"results": results})

    @app.post("/generate", response_model=None, responses={200: {"model": Generated}, **ERRORS},
              summary="Continue a prompt (language models)")
    async def generate(request: GenerateRequest):
        """The prompt followed by up to max_tokens generated tokens, as `seqtag generate` prints it."""
        refuse_unless(task == LANGUAGE_MODEL_TASK, f"This server holds a {task} model; /generate is for language "
                                                   "models. POST /predict.")
        _check_sizes([request.prompt], "prompt", settings)
        if request.max_tokens > settings.batch_tokens:
            raise HTTPException(422, f"max_tokens is {request.max_tokens:,}; this server generates at most "
                                     f"{settings.batch_tokens:,} tokens per request (--batch-tokens).")
        sampling = request.model_dump(exclude={"prompt"})
        text = await batcher.call(functools.partial(model.generate, request.prompt, **sampling))
        return JSONResponse({"text": text})

    @app.get("/health", summary="Liveness and this process's counters")
    async def health() -> dict:
        """Counters of this worker process: requests the model finished, batches (model runs: fewer than requests
        when requests shared a batch), requests in flight (queued or running), and internal errors (500 replies)."""
        return {"status": "ok", "task": task, "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
                "requests": batcher.requests, "batches": batcher.batches, "in_flight": batcher.in_flight,
                "internal_errors": app.state.internal_errors}

    @app.get("/metadata", summary="The model served and the server's limits")
    async def metadata() -> dict:
        return {"task": task, "labels": getattr(model, "labels", None), "seqtag_version": __version__,
                "model_path": str(path), "trained_with_seqtag": config.get("seqtag_version"),
                "metrics": model.metrics, "finetune": config.get("finetune"),
                "batching": {"wait_ms": settings.batch_wait_ms, "tokens": settings.batch_tokens},
                "limits": {"max_body_bytes": settings.max_body_bytes, "max_text_chars": settings.max_text_chars,
                           "max_items": settings.max_items, "max_generated_tokens": settings.batch_tokens},
                "workers": settings.workers}

    return app


# -- processes ------------------------------------------------------------------------------------------------

def torch_threads_per_worker(workers: int) -> int:
    """This machine's cores // workers, at least 1, so that N worker processes do not oversubscribe the cores;
    an OMP_NUM_THREADS set by the user caps it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    given = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(given)) if given.isdigit() and int(given) > 0 else threads


def app_from_environment() -> FastAPI:
    """The app factory each worker process runs (uvicorn needs an import string for several workers): its
    settings come from the SEQTAG_SERVE_SETTINGS variable that `serve` sets."""
    raw = os.environ.get(SETTINGS_VARIABLE)
    if not raw:
        raise SeqtagError(f"{APP_FACTORY} reads its settings from the {SETTINGS_VARIABLE} variable, which is not "
                          "set; start the server with `seqtag serve MODEL` (or seqtag.serve.serve).")
    settings = ServeSettings(**json.loads(raw))
    torch.set_num_threads(torch_threads_per_worker(settings.workers))
    return create_app(settings)


class _Stopped(BaseException):
    """SIGTERM or SIGINT reached `serve` itself: before the server started, or re-raised by uvicorn once its
    graceful shutdown is over (uvicorn does that so a signal's default effect follows; `serve` returns)."""


def _stop(signum, frame):
    raise _Stopped(signum)


# Every signal uvicorn's process supervisor catches; `serve` puts their handlers back when it returns.
_SUPERVISED_SIGNALS = tuple(getattr(signal, f"SIG{name}") for name in "INT TERM HUP QUIT TTIN TTOU USR1 USR2 WINCH".split()
                            if hasattr(signal, f"SIG{name}"))


@contextlib.contextmanager
def _stops_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end `serve` normally (a clean stop, exit status 0), and every handler uvicorn sets is
    put back afterwards. Only the main thread may set handlers; elsewhere uvicorn sets none either."""
    if threading.current_thread() is threading.main_thread():
        saved = {number: signal.getsignal(number) for number in _SUPERVISED_SIGNALS}
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, _stop)
    else:
        saved = {}
    try:
        with contextlib.suppress(_Stopped):
            yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _check_address(host: str, port: int) -> None:
    """Fail before loading anything when the server could not listen at host:port (in use, not this machine's)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as err:
        raise SeqtagError(f"Cannot listen on {host}:{port} ({err.strerror or err}); give another --port, or a --host "
                          "of this machine (127.0.0.1 for this machine only, 0.0.0.0 for every interface).") from None


def _uvicorn_logging() -> tuple[dict, str]:
    """uvicorn's log configuration with access lines on stderr too (stdout is for results), and its level:
    seqtag's (`seqtag --quiet serve` shows warnings and errors only)."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    quiet = logging.getLogger("seqtag").getEffectiveLevel() > logging.INFO
    return log_config, "warning" if quiet else "info"


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          batch_wait_ms: float = 5.0, batch_tokens: int = 8192, max_body_bytes: int = 1_000_000,
          max_text_chars: int = 100_000, max_items: int = 1000) -> None:
    """Serve the model in `model_dir` over HTTP until SIGTERM or SIGINT (Ctrl+C), which stop accepting
    connections, finish the requests under way, and return. The settings are those of `ServeSettings`.

    With `workers` > 1, uvicorn starts that many processes, each loading the model with cores // workers
    torch threads, and the settings travel to them in the SEQTAG_SERVE_SETTINGS variable."""
    settings = ServeSettings(str(model_dir), host, port, workers, batch_wait_ms, batch_tokens, max_body_bytes,
                             max_text_chars, max_items)
    _check_address(host, port)
    log_config, log_level = _uvicorn_logging()
    options = dict(host=host, port=port, log_config=log_config, log_level=log_level,
                   timeout_graceful_shutdown=None)  # finish every request in flight, however long it takes
    threads = torch.get_num_threads()
    environment = os.environ.get(SETTINGS_VARIABLE)
    with kept_process_state(), _stops_on_signals():
        try:
            if workers == 1:
                torch.set_num_threads(torch_threads_per_worker(1))
                app = create_app(settings)  # loads here: a bad model directory is one clear error
                uvicorn.Server(uvicorn.Config(app, **options)).run()
            else:
                load(settings.model_dir)  # checked once here, so a bad directory is one error, not N crashed workers
                os.environ[SETTINGS_VARIABLE] = json.dumps(asdict(settings))
                uvicorn.run(APP_FACTORY, factory=True, workers=workers, **options)
        finally:
            torch.set_num_threads(threads)
            if environment is None:
                os.environ.pop(SETTINGS_VARIABLE, None)
            else:
                os.environ[SETTINGS_VARIABLE] = environment
