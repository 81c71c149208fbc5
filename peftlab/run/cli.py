"""Entry-point glue: a PeftlabError becomes one line on stderr and exit code 2, not a traceback."""

import sys
from collections.abc import Callable

from omegaconf import DictConfig

from peftlab.errors import PeftlabError


def run_cli(fn: Callable[[DictConfig], object], cfg: DictConfig):
    try:
        return fn(cfg)
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
