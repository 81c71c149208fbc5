"""Evaluate an adapter or a base model: `python evaluate.py adapter=<run dir> dataset=sst2` (see --help)."""

import hydra
from omegaconf import DictConfig

import peftlab  # noqa: F401  (registers the config resolvers used in conf/)
from peftlab.run.cli import run_evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_evaluate(cfg)


if __name__ == "__main__":
    main()
