"""RunDir: a run folder's layout and its metrics.json schema, the contract between training and everything after it.

    <run>/config.yaml            the composed config, resolved (what evaluate, serve, export rebuild the run from)
    <run>/metrics.json           best/last/history, params, speed, memory (schema_version: METRICS_VERSION)
    <run>/cost.json              a SageMaker job's price: its instance, s/step, on-demand and spot USD (peftlab.cost)
    <run>/adapter/               the trained weights in peft's format (or the full model), with the tokenizer
    <run>/checkpoints/           Lightning checkpoints: last.ckpt, epochEE-stepSSSSSS.ckpt, tracker_runs.json
    <run>/.hydra/overrides.yaml  the command-line overrides Hydra recorded (the sweep report's row labels)
    <run>/csv/, tensorboard/     logger output (their own formats)
    evaluate.py writes eval_metrics.json, compare.csv, compare.md and predictions-<i>.jsonl into its own folder.

Every tool reaches a run through this class: no path inside a run folder is spelled anywhere else, and metrics.json
has one writer (training's RunOutputs callback) and one reader (read_metrics), which reads older folders by their
version. The checkpoints may live elsewhere (paths.checkpoint_dir: SageMaker's synced /opt/ml/checkpoints).
The bottom layer: it imports nothing of peftlab's but errors and the config tree's location.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import ConfigError

# metrics.json's schema. 1: folders before 2026-12-04 (no schema_version; a `cost` entry, null outside SageMaker).
# 2: schema_version; cost is priced from metrics.json by `python -m peftlab.cost` or inside a SageMaker job.
METRICS_VERSION = 2

# The checkpoint resume=auto continues from: callbacks.last_checkpoint rewrites it at every validation, and
# SaveOnSigterm on a SIGTERM.
LAST = "last.ckpt"
# callbacks.model_checkpoint's filename (conf/callbacks/default.yaml reads it through ${peftlab.checkpoint_name:}):
# compare's test stage finds a validation's checkpoint by its step.
CHECKPOINT_NAME = "epoch{epoch:02d}-step{step:06d}"

# What an adapter/ folder holds, by how the method saved it: peft, our parallel adapter, or a full model.
ADAPTER_FILES = ("adapter_config.json", "parallel_adapter_config.json", "config.json")


class _Path:
    """A file or folder of the run folder, read as an attribute (`run.metrics`): its name, in one place.
    `under`: "root" (the run folder) or "checkpoints" (which may live elsewhere)."""

    def __init__(self, *parts: str, under: str = "root"):
        self.parts, self.under = parts, under

    def __get__(self, run: "RunDir", owner=None) -> Path:
        return getattr(run, self.under).joinpath(*self.parts)


@dataclass(frozen=True)
class RunDir:
    root: Path
    checkpoint_dir: Path | None = None  # None: <root>/checkpoints

    config = _Path("config.yaml")
    metrics = _Path("metrics.json")
    cost = _Path("cost.json")
    adapter = _Path("adapter")
    last_checkpoint = _Path(LAST, under="checkpoints")
    tracker_runs = _Path("tracker_runs.json", under="checkpoints")  # beside what a restarted job gets back
    overrides = _Path(".hydra", "overrides.yaml")
    hydra_config = _Path(".hydra", "config.yaml")  # Hydra's record of the composition (a cloud sweep writes it too)
    # evaluate.py's outputs (its run folder is its own)
    eval_metrics = _Path("eval_metrics.json")
    compare_csv = _Path("compare.csv")
    compare_md = _Path("compare.md")

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser())
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", Path(self.checkpoint_dir).expanduser())

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.root / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        """The checkpoint model_checkpoint wrote at global step `step` (compare keeps one per validation)."""
        name = CHECKPOINT_NAME.replace("{epoch:02d}", "*").format(step=step)
        found = sorted(self.checkpoints.glob(f"{name}.ckpt"))
        if not found:
            raise ConfigError(f"{self.root}: no checkpoint of step {step} in {self.checkpoints}")
        return found[0]

    def saved_checkpoints(self) -> list[Path]:
        """Every checkpoint in the checkpoint folder, last.ckpt first, then the others newest first (resume's order of
        fallbacks when a file is broken)."""
        others = [p for p in self.checkpoints.glob("*.ckpt") if p.name != LAST]
        newest = sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
        return [self.last_checkpoint, *newest] if self.last_checkpoint.exists() else newest

    def predictions(self, index: int) -> Path:
        return self.root / f"predictions-{index}.jsonl"

    @property
    def finished(self) -> bool:
        return self.metrics.is_file()

    def read_metrics(self) -> dict:
        """metrics.json as today's schema, whichever version wrote it."""
        if not self.finished:
            raise ConfigError(f"run={self.root}: no metrics.json (a finished training run folder is needed)")
        report = json.loads(self.metrics.read_text())
        version = report.get("schema_version", 1)
        if version > METRICS_VERSION:
            raise ConfigError(f"run={self.root}: metrics.json schema {version} is newer than this peftlab's")
        if version == 1:
            report.pop("cost", None)  # priced by `python -m peftlab.cost` since version 2
        return {**report, "schema_version": METRICS_VERSION}

    def write_metrics(self, report: dict) -> dict:
        """Write metrics.json (training's RunOutputs is its one writer); returns what was written."""
        written = {"schema_version": METRICS_VERSION, **report}
        self.metrics.write_text(json.dumps(written, indent=2))
        return written

    def read_config(self):
        """config.yaml as today's config tree reads it (a run of an earlier version is upgraded, see _upgraded)."""
        from omegaconf import OmegaConf

        if not self.config.is_file():
            raise ConfigError(f"run={self.root}: no config.yaml; pass the training run's folder")
        return _upgraded(OmegaConf.load(self.config))

    def write_config(self, config) -> None:
        """config.yaml: the composed config, resolved (RunOutputs passes a plain dict; a copy may pass a folder's own
        config, already resolved)."""
        from omegaconf import OmegaConf

        self.root.mkdir(parents=True, exist_ok=True)
        if not isinstance(config, dict):
            OmegaConf.save(config, self.config)
            return
        # A plain dict goes straight to OmegaConf's own YAML dumper, the text OmegaConf.save writes: save would
        # first build a config node of it and read that back (5 ms against 15 ms a run on 2 cores).
        import yaml
        from omegaconf._utils import get_omega_conf_dumper

        dumper = get_omega_conf_dumper()
        dumped = yaml.dump(config, Dumper=dumper, default_flow_style=False, allow_unicode=True, sort_keys=False)
        self.config.write_text(dumped, encoding="utf-8")

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

    @classmethod
    def finished_jobs(cls, sweep: str | Path) -> list["RunDir"]:
        """The jobs of a sweep folder that finished (Hydra numbers them 0, 1, ...: in that order)."""
        jobs = [cls(p.parent) for p in Path(sweep).glob(f"*/{cls('.').metrics.name}")]
        return sorted(jobs, key=lambda run: (len(run.root.name), run.root.name))


# Keys that left a section on 2026-12-01 (dataset.local_name was read nowhere; hardware's SageMaker instance keys moved
# to the sagemaker group; model.unsupported_methods into each method's capabilities).
_REMOVED = {
    "dataset": ("local_name",),
    "hardware": ("instance_type", "instance_count", "volume_size_gb", "spot", "max_run", "max_wait", "region"),
    "model": ("unsupported_methods",),
}


def _upgraded(cfg):
    """A config.yaml written before methods were YAML records (2026-12-01) has `method: lora` and its fields but no
    class or capabilities: Hydra composes that option's record today, and the run's own values go over it. Today's
    configs come back unchanged."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False)
    for section, keys in _REMOVED.items():
        for key in keys:
            (plain.get(section) or {}).pop(key, None)
    peft = plain.get("peft")
    if isinstance(peft, dict) and peft.get("method") and "capabilities" not in peft:
        record = _method_record(str(peft["method"]))
        if record is not None:
            plain["peft"] = OmegaConf.to_container(OmegaConf.merge(record, peft))
    return OmegaConf.create(plain)


def _method_record(method: str):
    """conf/peft/<method>.yaml as Hydra composes it (its defaults list merged), or None for an unknown option."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from peftlab.conf import CONF_DIR

    if not (CONF_DIR / "peft" / f"{method}.yaml").is_file():
        return None
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose("config", overrides=[f"peft={method}"]).peft
        except HydraException:
            return None
