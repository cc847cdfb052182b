"""Load check of the UI's HTTP API (not a timed test): N concurrent clients against one
`sameface ui` server on loopback, bounded in count and time.

The server runs the shipped world in its own process (one model request at a time, the
others queued). Each client has its own session and person (PuLID, the world's trained
adapter) and sends R generation requests. Reported, medians over requests:

- service time: a request's latency when it is alone (one client first, same requests);
- latency under load, and queue wait = latency − the alone median;
- throughput: requests finished per second over the loaded run.

    python benchmarks/ui_load.py --clients 4 --requests 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MAX_CLIENTS = 8
MAX_SECONDS = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(data: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sameface.cli", "ui", "--data-dir", str(data), "--port",
           str(port)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("server did not start")


def _prepare(url: str, session: str, photos: list[Path]) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(session, "p", [handle_file(str(p)) for p in photos], None,
                   api_name="/create_identity")  # fmt: skip
    client.predict(session, "p", "pulid", {}, "", api_name="/personalize")


def _requests(url: str, session: str, n: int, steps: int, out: list, start: threading.Event):
    from gradio_client import Client

    client = Client(url, verbose=False)
    start.wait()
    for i in range(n):
        t0 = time.perf_counter()
        client.predict(session, "p", "pulid", ["a photo of <id>"], [i], "", steps, 7.5, {},
                       False, api_name="/generate")  # fmt: skip
        out.append((t0, time.perf_counter()))


def _run(url: str, sessions: list[str], n: int, steps: int) -> tuple[list, float]:
    out: list = []
    start = threading.Event()
    threads = [
        threading.Thread(target=_requests, args=(url, s, n, steps, out, start)) for s in sessions
    ]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.set()
    for t in threads:
        t.join(timeout=MAX_SECONDS)
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=4, help=f"concurrent clients (≤ {MAX_CLIENTS})")
    p.add_argument("--requests", type=int, default=3, help="generation requests per client")
    p.add_argument("--steps", type=int, default=30, help="sampling steps per image")
    args = p.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS}")

    from sameface.demo import load_world

    photos = next(iter(load_world().reference_people().values()))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = _server(Path(tmp), port)
        try:
            _wait_up(url, proc)
            sessions = [f"{i:032x}" for i in range(args.clients)]
            for s in sessions:
                _prepare(url, s, photos)
            alone, _ = _run(url, sessions[:1], args.requests, args.steps)
            service = statistics.median(b - a for a, b in alone)
            loaded, wall = _run(url, sessions, args.requests, args.steps)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    latencies = sorted(b - a for a, b in loaded)
    done = len(latencies)
    expected = args.clients * args.requests
    print(f"server: shipped world, one model request at a time; {args.steps} steps/image")
    print(f"alone: median service time {service:.2f} s ({len(alone)} requests)")
    print(
        f"{args.clients} clients × {args.requests} requests: {done}/{expected} finished in {wall:.1f} s"
    )
    print(f"  latency median {statistics.median(latencies):.2f} s, "
          f"p90 {latencies[int(0.9 * (done - 1))]:.2f} s, max {latencies[-1]:.2f} s")  # fmt: skip
    print(f"  queue wait median {statistics.median(latencies) - service:.2f} s "
          f"(latency − alone median)")  # fmt: skip
    print(f"  throughput {done / wall:.2f} requests/s (alone: {1 / service:.2f} requests/s)")


if __name__ == "__main__":
    main()
