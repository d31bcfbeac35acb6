"""Load test of `seqtag serve`: requests/s, p50 and p99 latency and errors at 1, 8 and 32 concurrent clients,
with micro-batching on and then off.

Each request is one raw EWT test sentence, `POST /predict {"text": ...}`, the sentences taken in file order.
For each mode the script starts its own server (`seqtag serve`, one worker), sends a few warm-up requests,
then for each client count runs a fixed number of requests: that many clients each send a request, wait for
the answer and send the next one, until the count is done. Batches are counted by the server (/health), so the
table shows how many requests shared a model run. Every answer must be a 200 (the script exits 1 otherwise).

This is the template for any load test of the server, and any new one keeps its three rules:
- loopback only: it starts its own server on 127.0.0.1 and sends nothing anywhere else;
- a bounded count: a fixed number of requests per setting, never "as many as possible for as long as it runs";
- it stops by itself: each server gets SIGTERM when its mode is done, and must exit with status 0.

    OMP_NUM_THREADS=1 .venv/bin/python bench/serve_load.py runs/demo/model [--requests 400] [--clients 1,8,32]
    OMP_NUM_THREADS=1 .venv/bin/python bench/serve_load.py      # trains the demo recipe into a temporary folder first

The client runs on the same machine (one asyncio process with httpx), so on a small machine it competes with the
server for the cores; the figures are the server and its client together.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import httpx

HOST = "127.0.0.1"  # loopback only: see the docstring
WARM_UP = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(model: str, batch_wait_ms: float, log: Path) -> tuple[subprocess.Popen, str]:
    """`seqtag --quiet serve` (no access log lines) on a free loopback port, once it answers /health."""
    port = free_port()
    with log.open("wb") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "seqtag", "--quiet", "serve", model, "--host", HOST,
                                   "--port", str(port), "--batch-wait-ms", str(batch_wait_ms)],
                                  cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server stopped (status {server.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    sys.exit("the server did not answer /health within 120 s")


def stop_server(server: subprocess.Popen, log: Path) -> None:
    server.send_signal(signal.SIGTERM)
    if server.wait(timeout=120) != 0:
        sys.exit(f"the server exited with status {server.returncode} after SIGTERM:\n{log.read_text()}")


async def run_load(url: str, texts: list[str], requests: int, clients: int) -> dict:
    """`requests` requests from `clients` concurrent clients; latencies in seconds and the error count."""
    latencies: list[float] = []
    errors = 0
    numbers = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for number in numbers:  # shared: each number is taken by exactly one client
            start = time.perf_counter()
            try:
                reply = await client.post("/predict", json={"text": texts[number % len(texts)]})
                ok = reply.status_code == 200 and "result" in reply.json()
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "latencies": latencies, "errors": errors}


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a saved tagger (default: train the demo recipe first)")
    parser.add_argument("--requests", type=int, default=400, help="requests per client count and mode")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the batching mode's --batch-wait-ms")
    args = parser.parse_args()
    client_counts = [int(n) for n in args.clients.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="seqtag-serve-load-"))
    model = args.model
    if model is None:
        import seqtag

        print("training the demo recipe ...", flush=True)
        model = str(seqtag.train("demo", out=str(folder / "demo")).model_dir)
    texts = common.raw_sentences(common.EWT / "en_ewt-ud-test.conllu")

    rows, failed = [], False
    for mode, wait_ms in (("on", args.batch_wait_ms), ("off", 0.0)):
        log = folder / f"server-{mode}.log"
        server, url = start_server(model, wait_ms, log)
        try:
            threads = httpx.get(f"{url}/health").json()["torch_threads"]
            asyncio.run(run_load(url, texts, WARM_UP, 1))
            for clients in client_counts:
                before = httpx.get(f"{url}/health").json()
                server_cpu, client_cpu = cpu_seconds(before["pid"]), time.process_time()
                result = asyncio.run(run_load(url, texts, args.requests, clients))
                server_cpu = (cpu_seconds(before["pid"]) - server_cpu) if server_cpu is not None else float("nan")
                client_cpu = time.process_time() - client_cpu
                after = httpx.get(f"{url}/health").json()
                batches = after["batches"] - before["batches"]
                latencies = result["latencies"]
                rows.append((f"{mode} ({wait_ms:g} ms)", clients, args.requests, args.requests / result["seconds"],
                             1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.99),
                             result["errors"], args.requests / max(batches, 1), 1000 * server_cpu / args.requests,
                             1000 * client_cpu / args.requests))
                failed |= result["errors"] > 0
                print(f"batching {rows[-1][0]}, {clients} clients: {rows[-1][3]:.0f} requests/s", flush=True)
        finally:
            stop_server(server, log)

    print(f"\nmodel {model}; {len(texts):,} EWT test sentences, one per request; {args.requests} requests per row "
          f"after {WARM_UP} warm-up requests; server torch threads {threads}, one worker")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print("\n| batching | clients | requests | requests/s | p50 ms | p99 ms | errors | requests per batch | "
          "server CPU ms/request | client CPU ms/request |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, clients, requests, rate, p50, p99, errors, per_batch, server_ms, client_ms in rows:
        print(f"| {mode} | {clients} | {requests} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {errors} | {per_batch:.1f} | "
              f"{server_ms:.2f} | {client_ms:.2f} |")
    if failed:
        sys.exit("some requests failed: the error count must be 0")


if __name__ == "__main__":
    main()
