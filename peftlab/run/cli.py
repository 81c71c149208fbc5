"""Entry-point glue: validate first (fast, before heavy imports); a PeftlabError becomes one line on stderr."""

import sys

from omegaconf import DictConfig

from peftlab.config import validate
from peftlab.errors import PeftlabError


def run_train(cfg: DictConfig) -> float | None:
    """What `python train.py` runs: exit code 2 and `error: <key>: <what is allowed>` on a user error."""
    try:
        validate(cfg)  # a bad override fails in about a second, before torch/transformers are imported
        from peftlab.run.train import train

        return train(cfg)
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
