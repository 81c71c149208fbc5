"""Evaluate an adapter or a base model: `python evaluate.py adapter=<run dir> dataset=sst2` (see --help)."""

import hydra
from omegaconf import DictConfig

from peftlab.cli import exit_after, run_command
from peftlab.conf import CONFIG_PATH
from peftlab.run import evaluate


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig):
    return run_command(evaluate, cfg)


if __name__ == "__main__":
    exit_after(main)
