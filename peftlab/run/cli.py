"""Entry-point glue: validate first (fast, before heavy imports); a PeftlabError becomes one line on stderr."""

import importlib
import sys

from omegaconf import DictConfig

from peftlab.compat import prepare_process
from peftlab.config import validate
from peftlab.errors import PeftlabError


def _guarded(cfg: DictConfig, module: str, function: str, precheck: bool = True):
    """Exit code 2 and `error: <key>: <what is allowed>` on a user error, instead of a traceback."""
    prepare_process()  # bitsandbytes only for QLoRA; no upstream noise (compat.py)
    try:
        if precheck:
            validate(cfg)  # a bad override fails in about a second, before torch/transformers are imported
        return getattr(importlib.import_module(module), function)(cfg)
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run_train(cfg: DictConfig) -> float | None:
    """What `python train.py` runs; returns the best validation metric (for sweepers)."""
    return _guarded(cfg, "peftlab.run.distributed", "train_job")


def run_evaluate(cfg: DictConfig) -> list[dict]:
    """What `python evaluate.py` runs; returns one row of metrics per model evaluated.

    With adapter=/compare=/source= the model and method come from each run's config.yaml, so the command line's
    model= is not checked up front (evaluate validates every merged config before loading anything).
    """
    from_runs = any(cfg.get(key) for key in ("adapter", "compare", "source"))
    return _guarded(cfg, "peftlab.run.evaluate", "evaluate", precheck=not from_runs)


def run_launch(cfg: DictConfig) -> dict:
    """What `python launch_sagemaker.py` runs: validate the run, then print (dry_run) or create the SageMaker job."""
    return _guarded(cfg, "peftlab.cloud.launch", "launch")
