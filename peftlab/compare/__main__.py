"""`python -m peftlab.compare <training overrides> compare.methods=[...]`: the tune -> confirm -> test protocol
(keys: conf/compare.yaml, or --help)."""

import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from peftlab.cli import run_command
from peftlab.conf import CONFIG_PATH


def compare(cfg: DictConfig) -> dict:
    """Record the command line in <out>/command.txt (the report quotes it), then run the protocol."""
    hydra = HydraConfig.get()
    command_line = list(hydra.overrides.task)
    # The folder Hydra resolved hydra.run.dir=${compare.out} to: resolving ${now:...} again could give the next second.
    cfg.compare.out = hydra.runtime.output_dir
    out = Path(cfg.compare.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(shlex.join(["python", "-m", "peftlab.compare", *sys.argv[1:]]) + "\n")
    from peftlab.compare import run_protocol  # after Hydra composed: --help and a refused key come first

    return run_protocol(cfg, command_line)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="compare")
def main(cfg: DictConfig) -> None:
    run_command(compare, cfg)


if __name__ == "__main__":
    main()
