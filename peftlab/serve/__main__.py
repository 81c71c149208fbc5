"""`python -m peftlab.serve predict|http --adapter NAME=RUN_DIR ...`: one base, the named adapters on top."""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from peftlab.cli import require_extra, run_command

require_extra("serve", "fastapi", "uvicorn")  # before any of the server is imported
from peftlab.errors import ConfigError  # noqa: E402
from peftlab.serve.limits import ServeOptions, is_loopback  # noqa: E402

if TYPE_CHECKING:  # imported by load_server: peft (and bitsandbytes with it) only after run_command's preparation
    from peftlab.serve.registry import AdapterServer


def _adapter_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--adapter {value!r}: expected NAME=PATH (a run folder or its adapter/)")
    return name, path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m peftlab.serve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("predict", "answer TEXT with every adapter (and the base)"),
        ("http", "serve JSON + page"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--adapter", action="append", type=_adapter_arg, required=name == "predict", metavar="NAME=PATH"
        )
        sub.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: the GPU where one is visible)")
        if name == "predict":
            sub.add_argument("text", help="the input text (the task's first input column)")
            sub.add_argument("--use", help="answer with this adapter only (default: all)")
            sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        else:
            add_http_flags(sub)
    return parser.parse_args(argv)


def add_http_flags(sub: argparse.ArgumentParser) -> None:
    defaults = ServeOptions()
    sub.add_argument("--host", default="127.0.0.1", help="another host than loopback needs an API key")
    sub.add_argument("--port", type=int, default=8000)
    sub.add_argument("--api-key", default=os.environ.get("PEFTLAB_API_KEY"), help="default: $PEFTLAB_API_KEY")
    sub.add_argument("--adapter-root", action="append", type=Path, default=[], help="POST /adapters reads below it")
    sub.add_argument("--max-batch", type=int, default=defaults.max_batch, help="rows per model call")
    sub.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms, help="wait for a batch to fill")
    sub.add_argument("--max-chars", type=int, default=defaults.max_chars, help="characters per text")
    sub.add_argument("--max-texts", type=int, default=defaults.max_texts, help="texts per request")
    sub.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    sub.add_argument("--max-tokens", type=int, default=defaults.max_tokens, help="ceiling on max_tokens")
    sub.add_argument("--timeout-s", type=float, default=defaults.timeout_s, help="per request; then 504")


def http_options(args: argparse.Namespace) -> ServeOptions:
    """The http command's flags as ServeOptions; a host beyond loopback without a key is refused."""
    if not is_loopback(args.host) and not args.api_key:
        raise ConfigError(f"--host {args.host}: serving beyond loopback needs --api-key or PEFTLAB_API_KEY")
    if not args.adapter and not args.adapter_root:
        raise ConfigError("--adapter: give at least one NAME=PATH, or --adapter-root to add adapters over HTTP")
    for flag in ("max_batch", "max_chars", "max_texts", "max_body_bytes", "max_tokens"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be 1 or more")
    if args.max_wait_ms < 0 or args.timeout_s <= 0:
        raise ConfigError("--max-wait-ms must be 0 or more and --timeout-s more than 0")
    for root in args.adapter_root:
        if not root.is_dir():
            raise ConfigError(f"--adapter-root {root}: not a folder")
    fields = ("max_batch", "max_wait_ms", "max_chars", "max_texts", "max_body_bytes", "max_tokens", "timeout_s")
    limits = {name: getattr(args, name) for name in fields}
    return ServeOptions(**limits, api_key=args.api_key, adapter_roots=tuple(args.adapter_root))


def load_server(adapters: list[tuple[str, str]], device: str = "auto") -> "AdapterServer":
    from peftlab.serve.registry import AdapterServer

    server = AdapterServer(device=device)
    for name, path in adapters:
        server.add_adapter(name, path)
    return server


def predict(server: "AdapterServer", text: str, only: str | None, as_json: bool) -> None:
    names = [only] if only else list(server.adapters)
    rows = [{"adapter": n, **server.predict(n, text), "base": server.predict(n, text, base=True)} for n in names]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"base {server.base.name}: {text!r}")
    for column in ("adapter", "task", "answer", "base answer"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["adapter"], server.adapters[row["adapter"]].settings.dataset.name, row["answer"], row["base"]["answer"]
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    return run_command(serve, parse_args(sys.argv[1:] if argv is None else argv))


def serve(args: argparse.Namespace) -> int:
    options = http_options(args) if args.command == "http" else None  # flags checked before the base loads
    server = load_server(args.adapter or [], args.device)
    if args.command == "predict":
        predict(server, args.text, args.use, args.json)
        return 0
    import uvicorn

    from peftlab.serve.app import create_app

    uvicorn.run(create_app(server, options), host=args.host, port=args.port, timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
