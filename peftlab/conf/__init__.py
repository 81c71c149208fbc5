"""The Hydra config tree (one folder per config group), shipped inside the package: `pkg://peftlab.conf`.

CONF_DIR is where it lies, for code that composes it directly (tests, benchmarks, the price table).
"""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
CONFIG_PATH = "pkg://peftlab.conf"  # what @hydra.main(config_path=...) takes: found wherever peftlab is installed
