"""evaluate(cfg): score a trained adapter (or the untrained base) on the validation split; compare several."""

import csv
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from peftlab.config import validate
from peftlab.data.encoders import FINGERPRINT_KEYS
from peftlab.models.methods import apply_method, load_trained
from peftlab.modules import build_module
from peftlab.run.artifacts import fetch_artifact
from peftlab.run.rundir import RunDir
from peftlab.run.setup import prepare_job
from peftlab.trainer.build import build_trainer

log = logging.getLogger(__name__)


# Evaluating on the dataset a run trained on: encode inputs as in training, or the scores would not be comparable.
ENCODING_KEYS = (*(k for k in FINGERPRINT_KEYS if k != "task"), "generation")


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
    return OmegaConf.create(merged)


def score(cfg: DictConfig, adapter_folder: Path | None) -> tuple[dict, list[dict]]:
    """Validation metrics of one model (base + optional adapter) on cfg.dataset, and generated answers if any."""
    settings = validate(cfg)
    trainer = build_trainer(cfg, settings, evaluation=True)  # cfg.trainer: +trainer.<arg> overrides apply
    job = prepare_job(settings, trainer.strategy.root_device)
    base, datamodule, head = job.base, job.datamodule, job.head
    if adapter_folder is None:
        model = apply_method(base, settings.peft, head, settings.shape)
    else:
        model = load_trained(base, settings.peft, adapter_folder)
    module = build_module(settings, model, job.tokenizer)
    (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    row = {
        "model": settings.model.name,
        "method": settings.peft.method,
        "adapter": str(adapter_folder) if adapter_folder else None,
        "dataset": settings.dataset.name,
        "rows": len(datamodule.val_dataset),
        **{k: float(v) for k, v in metrics.items()},
    }
    return row, list(getattr(module, "predictions", []))


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
            row, predictions = score(with_run_model(cfg, run_config), folder)
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
    metrics = sorted({k for row in rows for k in row if k.startswith("val/")})
    columns = ["model", "method", "adapter", "dataset", "rows", *metrics]
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
        table.add_column(column, justify="right" if column.startswith("val/") or column == "rows" else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)
    log.info("wrote %s, %s, %s", out.eval_metrics, out.compare_csv, out.compare_md)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))
