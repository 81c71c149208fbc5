"""Tiny adapters on GPT-2's twin, trained once per test session for every tests/test_serve*.py file."""

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from conftest import compose_config

from peftlab.run import fit

TINY = ["trainer.max_epochs=1", "dataset.max_train_rows=64", "dataset.max_eval_rows=16"]
SENTENCE = "a moving, beautifully acted film"
SQL_CONTEXT = "table: t\ncolumns: name, number"


def write_sql_data(folder: Path) -> Path:
    folder.mkdir()
    rows = [
        {
            "question": f"who wears number {i}?",
            "context": SQL_CONTEXT,
            "answer": f"SELECT name FROM t WHERE number = {i}",
        }
        for i in range(32)
    ]
    for split in ("train", "validation"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def train_serve_runs(root: Path) -> Path:
    """LoRA and IA3 (cannot mix) classifiers, LoRA and prefix (cannot mix, nor pad) text-to-SQL adapters on GPT-2's
    twin, and one classifier on another base."""
    sql = write_sql_data(root / "sql_data")
    sql_args = ["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={sql}", "dataset.generation.max_new_tokens=6"]
    plans = {
        "pos_a": ["model=gpt2_tiny", "seed=1"],
        "pos_b": ["model=gpt2_tiny", "seed=2", "peft.lr=1e-2"],
        "pos_ia3": ["model=gpt2_tiny", "peft=ia3", "seed=3"],
        "sql": sql_args,
        "sql_b": [*sql_args, "seed=2", "peft.lr=1e-2", "dataset.generation.max_new_tokens=8"],
        "sql_prefix": [*sql_args, "peft=prefix"],
        "other": ["model=bloom_tiny"],
    }
    for name, overrides in plans.items():
        fit(compose_config(TINY + overrides, output_dir=root / name))
    return root


def server_with(root: Path, names: tuple[str, ...]):
    """An AdapterServer holding the named runs of train_serve_runs (one base read, the adapters on top)."""
    from peftlab.serve.registry import AdapterServer

    server = AdapterServer()
    for name in names:
        server.add_adapter(name, root / name)
    return server


@contextmanager
def live_server(server, options=None):
    """The app served by uvicorn on a free port of 127.0.0.1 in a thread, for clients that speak real HTTP."""
    import uvicorn

    from peftlab.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = uvicorn.Server(uvicorn.Config(create_app(server, options), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.should_exit = True
        thread.join(timeout=10)
