"""The source tarball a SageMaker job runs: the project's code and config tree, plus the composed run config."""

import tarfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from peftlab.cloud.settings import redact

REPO = Path(__file__).resolve().parents[2]
# What `pip install .` and `python train.py ...` need in the container; nothing else of the work tree travels
# (no outputs/, caches, .env or .git).
INCLUDE = ("pyproject.toml", "README.md", "train.py", "evaluate.py", "peftlab")  # the config tree is peftlab/conf
SKIP = ("__pycache__", ".pyc", ".egg-info")
COMPOSED = "peftlab_job_config.yaml"  # the composition launch_sagemaker.py saw, for the record and for checks


def write_source_tarball(cfg: DictConfig, destination: Path) -> Path:
    """peftlab-source.tar.gz with INCLUDE and the composed config (interpolations kept, secrets redacted)."""
    destination.mkdir(parents=True, exist_ok=True)
    composed = destination / COMPOSED
    # Unresolved: paths like ${hydra:runtime.output_dir} resolve in the job, not on the launching machine.
    container = OmegaConf.to_container(cfg, resolve=False)
    composed.write_text(OmegaConf.to_yaml(OmegaConf.create(redact(container))))
    archive = destination / "peftlab-source.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in INCLUDE:
            tar.add(REPO / name, arcname=name, filter=_skip_build_files)
        tar.add(composed, arcname=COMPOSED)
    return archive


def _skip_build_files(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if any(part in info.name for part in SKIP) else info
