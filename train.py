"""Fine-tune a model with a PEFT method: `python train.py model=minilm peft=lora dataset=sst2` (see --help)."""

import hydra
from omegaconf import DictConfig

from peftlab.cli import run_command
from peftlab.conf import CONFIG_PATH
from peftlab.run import train


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_command(train, cfg)


if __name__ == "__main__":
    main()
