"""Package names that load their module on first use, so a command's `--help` and refused keys come before the
heavy imports behind it (torch, transformers, datasets, scipy: seconds on 2 CPU cores).

`python -m peftlab.<package>` imports the package's __init__ before its Hydra main parses the command line; an
__init__ that imports its implementation makes every `--help` pay for it. PEP 562's module __getattr__ keeps
`from peftlab.export import export_run` working while the import waits for that first use.
"""

import importlib
from collections.abc import Callable
from typing import Any


def forwarded(package: str, module: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A module __getattr__ for `package` that imports `module` the first time one of `names` is read."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
