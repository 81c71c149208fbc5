"""Run train.py as a SageMaker training job: `python launch_sagemaker.py hardware=g4dn_spot dry_run=true` (--help)."""

import hydra
from omegaconf import DictConfig

from peftlab.cli import run_command
from peftlab.cloud.launch import launch
from peftlab.conf import CONFIG_PATH


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="launch_sagemaker")
def main(cfg: DictConfig):
    return run_command(launch, cfg)


if __name__ == "__main__":
    main()
