"""`python -m peftlab.serve predict|http --adapter NAME=RUN_DIR ...`: one base, the named adapters on top."""

import argparse
import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from peftlab.cli import run_command

if TYPE_CHECKING:  # imported by load_server: peft (and bitsandbytes with it) only after run_command's preparation
    from peftlab.serve.server import AdapterServer


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
        sub.add_argument("--adapter", action="append", type=_adapter_arg, required=True, metavar="NAME=PATH")
        if name == "predict":
            sub.add_argument("text", help="the input text (the task's first input column)")
            sub.add_argument("--use", help="answer with this adapter only (default: all)")
            sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        else:
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=8000)
    return parser.parse_args(argv)


def load_server(adapters: list[tuple[str, str]]) -> "AdapterServer":
    from peftlab.serve.server import AdapterServer

    server = AdapterServer()
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
    server = load_server(args.adapter)
    if args.command == "predict":
        predict(server, args.text, args.use, args.json)
        return 0
    import uvicorn

    from peftlab.serve.app import create_app

    uvicorn.run(create_app(server), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
