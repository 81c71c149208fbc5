"""What every command line shares: the process set-up, a bad value as one `error:` line with exit code 2, a missing
extra said the same way, and the quoting of values in Hydra overrides that one command writes for another.

train.py (`python -m peftlab.train`), evaluate.py, launch_sagemaker.py, `python -m peftlab.export`, `peftlab.cost`
and `peftlab.serve` all return `run_command(function, *args)`: the same behaviour on a bad value everywhere, no
traceback. A value Hydra
refuses while it composes (a wrong type, an unknown key, a missing option: config/store.py) never reaches
run_command; importing this module makes Hydra report those in the same one line (report_composition_errors).
"""

import atexit
import functools
import gc
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from peftlab.compat import prepare_process
from peftlab.config.checks import schema_error
from peftlab.config.compose_once import compose_each_config_once
from peftlab.config.parsed_files import parse_each_file_once
from peftlab.errors import PeftlabError

USER_ERROR = 2  # exit code of a bad value or file (argparse and Hydra use 2 for usage errors too)


def run_command(function: Callable[..., Any], *args: Any) -> Any:
    """Call function(*args); a PeftlabError prints `error: <message>` on stderr and exits with USER_ERROR."""
    prepare_process()  # bitsandbytes only for QLoRA; no upstream noise (compat.py)
    skip_final_collection()
    try:
        return function(*args)
    except PeftlabError as err:
        _exit_with(str(err))


@functools.cache  # once per process, however many jobs a sweep runs through run_command
def skip_final_collection() -> None:
    """At exit, gc.freeze(): the interpreter's last garbage collection then skips every object still alive.

    After torch, transformers and Lightning are imported that collection walks millions of objects: 1.8 s of every
    command's exit on 2 cores, 0.3 s frozen (bench/README.md, "Start-up, sweep overhead"). The memory goes back to
    the system with the process; atexit handlers registered later (trackers, loggers) still run before it, and
    objects freed by reference counting are still finalized.
    """
    atexit.register(gc.freeze)


def exit_after(main: Callable[[], Any]) -> None:
    """A command line's whole process: main(), then an exit without the interpreter's teardown.

    Once a command has done its work, Python's finalization frees every module and object one at a time: 0.23 s
    after torch, transformers and Lightning (strace of a training run: last atexit handler to exit_group), memory the
    kernel takes back at once when the process ends. So when main() returns (a failure raises instead and exits the
    usual way, with its code), the first steps of the interpreter's own exit run (threads that are not daemons are
    joined and their exit hooks run, then the atexit clean-up: loggers, trackers, temporary folders), stdout and
    stderr are flushed, and os._exit(0) ends the process. Only the command lines call this; main() itself, as tests
    and Python callers use it, ends as any function does.
    """
    import threading

    main()
    join_threads, run_atexit = getattr(threading, "_shutdown", None), getattr(atexit, "_run_exitfuncs", None)
    if join_threads is None or run_atexit is None:  # no such steps to call in this interpreter: the usual exit
        return
    join_threads()
    run_atexit()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def composition_error(err: HydraException) -> str:
    """Hydra's composition error as one line: the OmegaConf refusal behind it names the full key and what is allowed
    (`dataset.batch_size: Value 'abc' ... could not be converted to Integer`); otherwise Hydra's own text, one line."""
    if isinstance(err.__cause__, OmegaConfBaseException) and getattr(err.__cause__, "full_key", None):
        return schema_error(err.__cause__)
    text = str(err).split("\nConfig search path:")[0]  # MissingConfigException's trailer: where Hydra looked
    parts: list[str] = []
    for line in text.splitlines():  # "Available options in 'model':" then one tab-indented option a line
        if line.startswith("\t") and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        elif line.strip():
            parts.append(line.strip())
    return "; ".join(parts)


def report_composition_errors() -> None:
    """Make @hydra.main print a failed composition as one `error:` line with exit code 2, like run_command.

    Hydra 1.3 runs the composition (and the task) under hydra._internal.utils.run_and_report, which prints such an
    error over several lines and exits 1; it has no public hook, so that function is wrapped where _run_hydra looks
    it up. HYDRA_FULL_ERROR=1 keeps Hydra's own report. tests/test_cli.py runs the real command lines through it.
    """
    from hydra._internal import utils

    report = getattr(utils, "run_and_report", None)
    if report is None or getattr(report, "one_line", False):  # another Hydra layout; or wrapped already
        return

    def run_and_report(func: Callable[[], Any]) -> Any:
        def composed() -> Any:
            try:
                return func()
            except (ConfigCompositionException, MissingConfigException, OverrideParseException) as err:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                _exit_with(composition_error(err))

        return report(composed)

    run_and_report.one_line = True
    utils.run_and_report = run_and_report


def require_extra(extra: str, *modules: str) -> None:
    """A command of an optional extra run without it installed: one `error:` line naming the extra, exit code 2."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        _exit_with(f"needs the '{extra}' extra ({', '.join(missing)} not installed): pip install 'peftlab[{extra}]'")


def quoted_value(value: str) -> str:
    """A value in Hydra's override grammar (quoted: a path may hold spaces, commas or '=')."""
    return "'" + value.replace("'", "\\'") + "'"


def _exit_with(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR)


report_composition_errors()  # before any entry point's @hydra.main runs: each imports run_command from here
compose_each_config_once()
parse_each_file_once()
