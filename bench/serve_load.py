"""Load test of `python -m peftlab.serve http`: sequential vs concurrent requests/s, latency, batch size, agreement.

    python bench/serve_load.py --adapter a=outputs/<A> --adapter b=outputs/<B> --clients 16 --rounds 4
    python bench/serve_load.py --quick      # trains 2 tiny GPT-2-twin classifiers (seconds), 4 clients x 2 rounds

Starts the server on 127.0.0.1 (a free port) in a subprocess, answers every (adapter, text) once, one request after
another, as the reference; then fires the same requests from C concurrent clients for R rounds. Prints requests/s of
both, p50/p99 latency, the server's mean batch size (GET /metrics), generated tokens/s for generation adapters, and
how many concurrent answers differ from the sequential ones (must be 0). Loopback only; bounded in requests and in
time (--max-seconds): it stops by itself and stops the server it started.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "a moving, beautifully acted film",
    "dull and far too long",
    "the best thing I have seen this year",
    "flat characters, a plot with holes everywhere",
    "who wears number 7?",
    "an uneven but often funny comedy",
    "I walked out after twenty minutes",
    "warm, clever and surprising from start to end",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=RUN_DIR")
    parser.add_argument("--quick", action="store_true", help="train 2 tiny adapters, 4 clients x 2 rounds")
    parser.add_argument("--texts", type=Path, help="one text per line (default: 8 built-in sentences)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    parser.add_argument("--max-tokens", type=int, default=None, help="generation adapters: tokens per answer")
    parser.add_argument("--max-seconds", type=float, default=900, help="the whole run, server start included")
    args = parser.parse_args(argv)
    if not args.adapter and not args.quick:
        parser.error("--adapter: give NAME=RUN_DIR at least once, or --quick")
    if args.quick:
        args.clients, args.rounds = min(args.clients, 4), min(args.rounds, 2)
    if not (1 <= args.clients <= 64 and 1 <= args.rounds <= 50):
        parser.error("--clients 1..64 and --rounds 1..50: the load stays bounded")
    return args


def train_quick_adapters(folder: Path, deadline: float) -> list[str]:
    """Two LoRA classifiers on GPT-2's twin and the demo data: enough to see batching work, in seconds."""
    adapters = []
    for seed in (1, 2):
        out = folder / f"tiny{seed}"
        overrides = ["model=gpt2_tiny", f"seed={seed}", "trainer.max_epochs=1", "dataset.max_train_rows=64"]
        overrides += ["dataset.max_eval_rows=16", f"hydra.run.dir={out}"]
        command = [sys.executable, str(REPO / "train.py"), *overrides]
        subprocess.run(command, check=True, capture_output=True, timeout=max(deadline - time.monotonic(), 1))
        adapters.append(f"tiny{seed}={out}")
    return adapters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, timeout: float = 120) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def start_server(args: argparse.Namespace, adapters: list[str], log: Path, deadline: float) -> tuple:
    port = free_port()
    command = [sys.executable, "-m", "peftlab.serve", "http", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    for adapter in adapters:
        command += ["--adapter", adapter]
    env = {k: v for k, v in os.environ.items() if k != "PEFTLAB_API_KEY"}  # loopback: no key
    with log.open("wb") as sink:  # a file, not a pipe: nobody reads while the load runs, so a pipe could fill up
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: {log.read_text(errors='replace')[-2000:]}")
        try:
            call(f"{url}/health", timeout=2)
            return process, url
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("the server did not answer /health before --max-seconds")


def ask(url: str, adapter: dict, text: str, max_tokens: int | None) -> tuple[str | tuple, int, float]:
    """(answer, generated tokens, seconds) for one request: /predict for classifiers, /v1/completions otherwise."""
    started = time.perf_counter()
    if adapter["task"] == "generation":
        body = {"model": adapter["name"], "prompt": text, "temperature": 0}
        if max_tokens:
            body["max_tokens"] = max_tokens
        answer = call(f"{url}/v1/completions", body)
        result = answer["choices"][0]["text"], answer["usage"]["completion_tokens"]
    else:
        answer = call(f"{url}/predict", {"adapter": adapter["name"], "text": text})
        result = (answer["answer"], answer["scores"]), 0
    return (*result, time.perf_counter() - started)


def same(a: str | tuple, b: str | tuple) -> bool:
    """Generated text must match exactly; classification the label, and scores within 1e-5."""
    if isinstance(a, str):
        return a == b
    (label_a, scores_a), (label_b, scores_b) = a, b
    return label_a == label_b and all(abs(scores_a[k] - scores_b[k]) <= 1e-5 for k in scores_a)


def run(args: argparse.Namespace, url: str, deadline: float) -> dict:
    adapters = call(f"{url}/adapters")["adapters"]
    texts = args.texts.read_text().splitlines() if args.texts else TEXTS
    work = [(a, t) for a in adapters for t in texts if t.strip()]
    started = time.perf_counter()
    reference = [ask(url, a, t, args.max_tokens) for a, t in work]
    sequential_s = time.perf_counter() - started
    before = call(f"{url}/metrics")
    jobs = [i for _ in range(args.rounds) for i in range(len(work))]
    results: list[tuple[int, tuple]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in jobs[k :: args.clients]:
            if time.monotonic() > deadline:
                return
            answer = ask(url, *work[i], args.max_tokens)
            with lock:
                results.append((i, answer))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent_s = time.perf_counter() - started
    after = call(f"{url}/metrics")
    latencies = sorted(r[2] * 1000 for _, r in results)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    batches = after["batches"] - before["batches"]
    rows = sum(int(k) * v for k, v in after["batch_sizes"].items()) - sum(
        int(k) * v for k, v in before["batch_sizes"].items()
    )
    return {
        "adapters": len(adapters),
        "texts": len(texts),
        "sequential_rps": len(work) / sequential_s,
        "concurrent_rps": len(results) / concurrent_s,
        "requests": len(results),
        "planned": len(jobs),
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "mean_batch": rows / batches if batches else 0,
        "sequential_tokens_s": sum(r[1] for r in reference) / sequential_s,
        "concurrent_tokens_s": sum(r[1] for _, r in results) / concurrent_s,
        "differing": sum(not same(answer[0], reference[i][0]) for i, answer in results),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        adapters = args.adapter or train_quick_adapters(Path(scratch), deadline)
        process, url = start_server(args, adapters, Path(scratch) / "server.log", deadline)
        try:
            figures = run(args, url, deadline)
        finally:
            process.terminate()
            process.wait(timeout=30)
    f = figures
    print(f"{f['adapters']} adapters x {f['texts']} texts; {args.clients} clients x {args.rounds} rounds")
    print("| load | requests/s | p50 | p99 | mean batch | tokens/s | answers differing from sequential |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {f['adapters'] * f['texts']} requests one after another | {f['sequential_rps']:.1f} | – | – | – |")
    print(
        f"| {args.clients} concurrent clients x {args.rounds} rounds ({f['requests']}/{f['planned']} requests) "
        f"| {f['concurrent_rps']:.1f} ({f['concurrent_rps'] / f['sequential_rps']:.2f}x) | {f['p50_ms']:.0f} ms "
        f"| {f['p99_ms']:.0f} ms | {f['mean_batch']:.2f} | {f['concurrent_tokens_s']:.1f} "
        f"(sequential {f['sequential_tokens_s']:.1f}) | {f['differing']} |"
    )
    return 1 if f["differing"] or f["requests"] < f["planned"] else 0


if __name__ == "__main__":
    sys.exit(main())
