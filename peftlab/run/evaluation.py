"""evaluate(cfg): score a trained adapter (or the untrained base) on the validation or test split; compare several."""

import csv
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from peftlab.data.encoders import FINGERPRINT_KEYS
from peftlab.data.heldout import HELD_OUT_KEYS, held_out_source
from peftlab.errors import ConfigError
from peftlab.models.methods import apply_method, load_trained
from peftlab.modules import build_module
from peftlab.run.artifacts import fetch_artifact
from peftlab.run.outputs import load_trainable_weights
from peftlab.run.settings import job_settings
from peftlab.run.setup import prepare_job
from peftlab.rundir import RunDir
from peftlab.trainer.build import build_trainer

log = logging.getLogger(__name__)


# Evaluating on the dataset a run trained on: encode inputs as in training, or the scores would not be comparable;
# and hold out the rows it held out (test_split, test_holdout), or its test rows would not be the ones it never saw.
ENCODING_KEYS = (*(k for k in FINGERPRINT_KEYS if k != "task"), "generation")

# split= -> the Trainer loop that scores it (test_step logs test/<metric>, validation_step val/<metric>).
SPLITS = {"validation": ("validate", "val_dataset"), "test": ("test", "test_dataset")}


def with_run_model(cfg: DictConfig, run_config: Path | None, use_method: bool = True) -> DictConfig:
    """The eval config with model (and method) replaced by those the run was trained with.

    On the run's own dataset, its input encoding (ENCODING_KEYS) is kept too; rows and files come from the command line.
    """
    if run_config is None:
        return cfg
    trained = RunDir(Path(run_config).parent).read_config()  # upgraded if an earlier version wrote it
    merged = OmegaConf.to_container(cfg, resolve=False)
    merged["model"] = OmegaConf.to_container(trained.model)
    if use_method:
        merged["peft"] = OmegaConf.to_container(trained.peft)
    if trained.dataset.name == cfg.dataset.name:
        recorded = OmegaConf.to_container(trained.dataset)
        merged["dataset"].update({k: recorded[k] for k in ENCODING_KEYS if k in recorded})
        if recorded.get("test_split") is not None:  # the rows it held out are its test rows
            merged["dataset"].update({k: recorded[k] for k in HELD_OUT_KEYS})
    return OmegaConf.create(merged)


def trained_on_every_train_row(run_config: Path | None) -> bool:
    """The run held nothing out of train (dataset.test_split=null): rows held out now would be rows it learned."""
    return run_config is not None and RunDir(Path(run_config).parent).read_config().dataset.get("test_split") is None


def check_test_rows_unseen(dataset, adapter_folder: Path | None, saw_all_train: bool) -> None:
    """Before anything loads: the dataset has test rows, and the run did not train on them."""
    source = held_out_source(dataset)
    if source is None:
        raise ConfigError(f"split=test: dataset.test_split=null (dataset {dataset.name}); set dataset.test_split=test")
    if saw_all_train and source.split is None:
        raise ConfigError(
            f"split=test: {adapter_folder} was trained on all of train (its dataset.test_split=null) and dataset "
            f"{dataset.name} has no test split of its own: held-out rows would be rows it trained on"
        )


def score(cfg: DictConfig, adapter_folder: Path | None, saw_all_train: bool = False) -> tuple[dict, list[dict]]:
    """Metrics of one model (base + optional adapter) on cfg.dataset's cfg.split, and generated answers if any."""
    return score_each(cfg, adapter_folder, [None], saw_all_train)[0]


def score_each(
    cfg: DictConfig, adapter_folder: Path | None, checkpoints: list[str | None], saw_all_train: bool = False
) -> list[tuple[dict, list[dict]]]:
    """score() for each of a run's checkpoints (None: the weights as loaded), the model and data built once."""
    split = cfg.get("split", "validation")
    if split not in SPLITS:
        raise ConfigError(f"split={split}: allowed values are {', '.join(SPLITS)}")
    settings = job_settings(cfg)
    if split == "test":
        check_test_rows_unseen(settings.dataset, adapter_folder, saw_all_train)
    trainer = build_trainer(settings, evaluation=True)  # cfg.trainer: +trainer.<arg> overrides apply
    job = prepare_job(settings, trainer.strategy.root_device)
    base, datamodule, head = job.base, job.datamodule, job.head
    if adapter_folder is None:
        model = apply_method(base, settings.peft, head, settings.shape)
    else:
        model = load_trained(base, settings.peft, adapter_folder)
    module = build_module(settings.shape, settings.dataset, model, job.tokenizer, objective=settings.objective)
    loop, rows = SPLITS[split]
    scored = []
    for checkpoint in checkpoints:
        if checkpoint is not None:  # a training checkpoint: its trainable weights over the same base
            load_trainable_weights(module, checkpoint)
        (metrics,) = getattr(trainer, loop)(module, datamodule=datamodule, verbose=False)
        row = {
            "model": settings.model.name,
            "method": settings.peft.method,
            "adapter": str(adapter_folder) if adapter_folder else None,
            "dataset": settings.dataset.name,
            "split": split,
            "rows": len(getattr(datamodule, rows)),
            **{k: float(v) for k, v in metrics.items()},
        }
        if checkpoint is not None:
            row["checkpoint"] = checkpoint
        if split == "test":  # which rows: the dataset's own test split, or rows held out of train (said so)
            row["test_rows_from"] = datamodule.test_source.describe(row["rows"])
        scored.append((row, list(getattr(module, "predictions", []))))
    return scored


def evaluate(cfg: DictConfig) -> list[dict]:
    """adapter=..., peft=none (base), or compare=[...]: one row each, written as JSON, CSV and markdown."""
    out = RunDir(cfg.paths.output_dir)
    if cfg.get("source"):  # an artifact (e.g. SageMaker's s3://.../model.tar.gz): unpack, then as a run folder
        entries = [str(fetch_artifact(cfg.source, str(out.root / "artifact")))]
    elif cfg.get("compare"):
        entries = list(cfg.compare)
    else:
        entries = [cfg.adapter if cfg.get("adapter") else "base"]
    rows, first_run_config = [], None
    out.root.mkdir(parents=True, exist_ok=True)
    for i, entry in enumerate(entries):
        if entry == "base":  # the untrained base of the first run compared (or of model=)
            row, predictions = score(with_run_model(_as_base(cfg), first_run_config, use_method=False), None)
        else:
            folder, run = RunDir.of_adapter(str(entry))
            run_config = run.config if run is not None else None
            first_run_config = first_run_config or run_config
            row, predictions = score(with_run_model(cfg, run_config), folder, trained_on_every_train_row(run_config))
        if predictions:  # generated text, next to its reference, for reading what the numbers mean
            row["predictions"] = str(out.predictions(i))
            Path(row["predictions"]).write_text("".join(json.dumps(p) + "\n" for p in predictions))
        rows.append(row)
    write_table(rows, out)
    return rows


def _as_base(cfg: DictConfig) -> DictConfig:
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["peft"] = {"method": "none", "lr": 1.0e-3}
    return OmegaConf.create(plain)


def write_table(rows: list[dict], out: RunDir) -> None:
    metrics = sorted({k for row in rows for k in row if k.startswith(("val/", "test/"))})
    columns = ["model", "method", "adapter", "dataset", "split", "rows", *metrics]
    out.eval_metrics.write_text(json.dumps(rows, indent=2))
    with out.compare_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    out.compare_md.write_text("\n".join(lines) + "\n")
    table = Table(title="peftlab evaluation")
    for column in columns:
        numeric = column.startswith(("val/", "test/")) or column == "rows"
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)
    log.info("wrote %s, %s, %s", out.eval_metrics, out.compare_csv, out.compare_md)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))
