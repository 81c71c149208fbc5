"""RunDir: the layout of a run folder, in one place, for everything that writes or reads one.

    <run>/config.yaml          the composed config, resolved (what evaluate, serve, export rebuild the run from)
    <run>/metrics.json         best/last/history, params, speed, memory, cost (report, cost, export card, sweepers)
    <run>/adapter/             the trained weights in peft's format (or the full model), with the tokenizer
    <run>/checkpoints/         Lightning checkpoints: last.ckpt, the best one, tracker_runs.json (resume)
    <run>/.hydra/overrides.yaml  the command-line overrides Hydra recorded (the sweep report's row labels)
    <run>/csv/, tensorboard/   logger output (their own formats)
    evaluate.py writes eval_metrics.json, compare.csv, compare.md and predictions-<i>.jsonl into its own folder.

The checkpoints may live elsewhere (paths.checkpoint_dir: SageMaker's synced /opt/ml/checkpoints).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import ConfigError

# The checkpoint resume=auto continues from: callbacks.last_checkpoint rewrites it at every validation, and
# SaveOnSigterm on a SIGTERM.
LAST = "last.ckpt"

# What an adapter/ folder holds, by how the method saved it: peft, our parallel adapter, or a full model.
ADAPTER_FILES = ("adapter_config.json", "parallel_adapter_config.json", "config.json")


@dataclass(frozen=True)
class RunDir:
    root: Path
    checkpoint_dir: Path | None = None  # None: <root>/checkpoints

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser())
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", Path(self.checkpoint_dir).expanduser())

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST

    @property
    def tracker_runs(self) -> Path:
        return self.checkpoints / "tracker_runs.json"  # beside what a restarted job gets back

    @property
    def overrides(self) -> Path:
        return self.root / ".hydra" / "overrides.yaml"

    # evaluate.py's outputs (its run folder is its own)
    @property
    def eval_metrics(self) -> Path:
        return self.root / "eval_metrics.json"

    @property
    def compare_csv(self) -> Path:
        return self.root / "compare.csv"

    @property
    def compare_md(self) -> Path:
        return self.root / "compare.md"

    def predictions(self, index: int) -> Path:
        return self.root / f"predictions-{index}.jsonl"

    def read_metrics(self) -> dict:
        if not self.metrics.is_file():
            raise ConfigError(f"run={self.root}: no metrics.json (a finished training run folder is needed)")
        return json.loads(self.metrics.read_text())

    def write_metrics(self, report: dict) -> None:
        self.metrics.write_text(json.dumps(report, indent=2))

    def read_config(self):
        from omegaconf import OmegaConf

        from peftlab.config.legacy import upgrade_run_config

        if not self.config.is_file():
            raise ConfigError(f"run={self.root}: no config.yaml; pass the training run's folder")
        return upgrade_run_config(OmegaConf.load(self.config))  # a run of an earlier version reads as today's

    def write_config(self, cfg) -> None:
        from omegaconf import OmegaConf

        self.root.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, self.config, resolve=True)

    @classmethod
    def of_adapter(cls, path: str | Path) -> tuple[Path, "RunDir | None"]:
        """(adapter folder, its training run or None) for a run folder or an adapter folder given by a user."""
        folder = Path(path).expanduser()
        if (folder / "adapter").is_dir():
            folder = folder / "adapter"
        if not any((folder / name).is_file() for name in ADAPTER_FILES):
            raise ConfigError(
                f"adapter={path}: no adapter here (expected a run folder with adapter/, or {ADAPTER_FILES})"
            )
        run = cls(folder.parent)
        return folder, run if run.config.is_file() else None
