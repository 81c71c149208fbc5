"""Fine-tune a model with a PEFT method: `python train.py model=minilm peft=lora dataset=sst2` (see --help)."""

import hydra
from omegaconf import DictConfig

import peftlab  # noqa: F401  (registers the config resolvers used in conf/)
from peftlab.run.cli import run_train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_train(cfg)


if __name__ == "__main__":
    main()
