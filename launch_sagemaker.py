"""Run train.py as a SageMaker training job: `python launch_sagemaker.py hardware=g4dn_spot dry_run=true` (--help)."""

import hydra
from omegaconf import DictConfig

import peftlab  # noqa: F401  (registers the config resolvers used in conf/)
from peftlab.run.cli import run_launch


@hydra.main(version_base="1.3", config_path="conf", config_name="launch_sagemaker")
def main(cfg: DictConfig) -> None:
    run_launch(cfg)


if __name__ == "__main__":
    main()
