"""`python -m peftlab.export run=<run dir> merge=true|false out=<folder> [dtype=float32]`: see peftlab.export."""

import logging
import sys

from peftlab.compat import prepare_process
from peftlab.errors import PeftlabError
from peftlab.export import ExportResult, export_run

KEYS = ("run", "merge", "out", "dtype")
USAGE = (
    "usage: python -m peftlab.export run=<run folder> merge=true|false out=<new folder> "
    "[dtype=float32|bfloat16|float16]"
)
BOOLEANS = {"true": True, "false": False}


def parse_args(args: list[str]) -> dict:
    """key=value pairs (as Hydra's command line); raises PeftlabError naming the allowed keys."""
    values: dict = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise PeftlabError(f"{arg}: unknown argument; allowed keys are {', '.join(KEYS)} ({USAGE})")
        values[key] = value
    missing = [k for k in ("run", "out") if not values.get(k)]
    if missing:
        raise PeftlabError(f"{missing[0]}= is required ({USAGE})")
    merge = values.get("merge", "true").lower()
    if merge not in BOOLEANS:
        raise PeftlabError(f"merge={values['merge']}: true or false")
    dtype = values.get("dtype", "float32")
    return {"run": values["run"], "out": values["out"], "merge": BOOLEANS[merge], "dtype": dtype}


def summary(result: ExportResult) -> str:
    mib = 2**20
    what = f"merged {result.method} model ({result.dtype})" if result.merged else f"{result.method} adapter"
    lines = [
        f"exported the {what} to {result.out}",
        f"size on disk: {result.out_bytes / mib:.2f} MiB (the run's adapter/: {result.adapter_bytes / mib:.2f} MiB)",
    ]
    if result.max_logit_diff is not None:
        lines.append(f"max |logit diff| merged vs base + adapter (probe sentences): {result.max_logit_diff:.3g}")
    if result.trained_as_logit_diff is not None:
        lines.append(f"max |logit diff| merged vs the 4-bit model as trained: {result.trained_as_logit_diff:.3g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prepare_process()  # bitsandbytes only for QLoRA; no upstream noise (compat.py)
    try:
        result = export_run(**parse_args(args))
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
