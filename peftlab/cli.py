"""What every command line shares: the process set-up, a PeftlabError as one `error:` line with exit code 2, and
the quoting of values in Hydra overrides that one command writes for another.

train.py (`python -m peftlab.train`), evaluate.py, launch_sagemaker.py, `python -m peftlab.export`, `peftlab.cost`
and `peftlab.serve` all return `run_command(function, *args)`: the same behaviour on a bad value everywhere, no
traceback.
"""

import sys
from collections.abc import Callable
from typing import Any

from peftlab.compat import prepare_process
from peftlab.errors import PeftlabError

USER_ERROR = 2  # exit code of a bad value or file (argparse and Hydra use 2 for usage errors too)


def run_command(function: Callable[..., Any], *args: Any) -> Any:
    """Call function(*args); a PeftlabError prints `error: <message>` on stderr and exits with USER_ERROR."""
    prepare_process()  # bitsandbytes only for QLoRA; no upstream noise (compat.py)
    try:
        return function(*args)
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR)


def require_extra(extra: str, *modules: str) -> None:
    """A command of an optional extra run without it installed: one `error:` line naming the extra, exit code 2."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"error: needs the '{extra}' extra ({', '.join(missing)} not installed): pip install 'peftlab[{extra}]'",
              file=sys.stderr)  # fmt: skip
        sys.exit(USER_ERROR)


def quoted_value(value: str) -> str:
    """A value in Hydra's override grammar (quoted: a path may hold spaces, commas or '=')."""
    return "'" + value.replace("'", "\\'") + "'"
