"""`python -m peftlab.report multirun/<date>/<time>`: write the sweep's summary, plots and verdict into it."""

import sys
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.report import write_report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m peftlab.report <sweep folder, e.g. multirun/2026-11-23/10-00-00>", file=sys.stderr)
        return 2
    try:
        result = write_report(args[0])
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((Path(args[0]) / "summary.md").read_text())
    print("plots:", ", ".join(str(p) for p in result["plots"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
