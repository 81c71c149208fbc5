"""`python -m peftlab.train ...` (or `peftlab-train ...`): the training command, from any folder, peftlab installed.

The one Hydra main over the package's config tree (pkg://peftlab.conf): the repository's train.py is a shim over it,
and peftlab.compare runs its stages' sweeps through it, so no caller needs a checkout or its folder.
"""

import hydra
from omegaconf import DictConfig

from peftlab.cli import exit_after, run_command
from peftlab.conf import CONFIG_PATH
from peftlab.run import train


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run, or one job of a -m sweep (any Hydra launcher); returns the best validation metric for sweepers."""
    return run_command(train, cfg)


def command() -> None:
    """The command line (train.py, `python -m peftlab.train`, `peftlab-train`): main, then a quick exit (cli.py)."""
    exit_after(main)


if __name__ == "__main__":
    command()
