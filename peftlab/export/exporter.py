"""export_run: the export folder's whole life (made, filled, renamed into place or removed), and what it returns.

Imported on first use of `peftlab.export.export_run` (the package's __init__), so the export command answers
`--help` and refuses a bad key before torch, transformers and gguf load.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from peftlab.config import validate
from peftlab.errors import ConfigError
from peftlab.export.card import model_card
from peftlab.export.gguf_card import gguf_card, gguf_text, ollama_modelfile
from peftlab.export.gguf_export import GGUF_FORMATS, GGUFExport, check_gguf_request, export_gguf
from peftlab.export.merge import DTYPES, MERGERS, MergedModel
from peftlab.models.params import folder_bytes
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)

# The message a merge=true request for a method that cannot be merged gets (the adapter is exported instead).
NOT_MERGEABLE_MESSAGE = (
    "merge=true: peft={method} cannot be merged into the base model ({why}); exported the adapter alone"
)
# What a run's adapter/ holds (the method's capabilities.adapter) -> how the card says to load it (LOAD_SNIPPETS).
ADAPTER_KINDS = {"peft": "peft", "parallel": "parallel", "model": "merged"}
FORMATS = ("hf", *GGUF_FORMATS)
PEFT_README = "README.md"  # peft's template card in adapter/: replaced by ours


@dataclass
class ExportResult:
    out: Path
    method: str
    merged: bool
    adapter_bytes: int  # the run's adapter/ folder (weights, config, tokenizer)
    out_bytes: int  # the exported folder
    dtype: str | None = None  # precision of the merged weights
    max_logit_diff: float | None = None  # merged vs base + adapter, on the probe sentences (merge.PROBE_TEXTS)
    trained_as_logit_diff: float | None = None  # QLoRA: merged vs the 4-bit model as trained
    message: str | None = None  # why a merge=true request exported the adapter alone
    gguf: GGUFExport | None = None  # format=gguf / gguf_lora: the file and its read-back check


def export_run(
    run: str | Path, out: str | Path, merge: bool = True, dtype: str = "float32", format: str = "hf"
) -> ExportResult:
    """Write the run's model to `out` (a new folder): merged (plain transformers) or the adapter alone.

    One function on purpose: the temporary folder's whole life (made, filled, renamed to `out` or removed on any
    failure) reads in one place, so no path leaves a half-written export behind.
    """
    adapter, run_dir = RunDir.of_adapter(run)
    if run_dir is None:
        raise ConfigError(f"run={run}: no config.yaml beside {adapter}; export needs the training run's folder")
    if format not in FORMATS:
        raise ConfigError(f"format={format}: allowed are {', '.join(FORMATS)}")
    if format == "hf" and dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype}: allowed are {', '.join(DTYPES)}")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out={out}: exists and is not an empty folder; choose a new one")
    settings = validate(run_dir.read_config(), check_files=False)
    method, capabilities = settings.peft.method, settings.peft.capabilities  # the method's record (conf/peft/)
    message, gguf = None, None
    if format != "hf":
        dtype = check_gguf_request(settings, format, dtype, capabilities.mergeable)
    if merge and not capabilities.mergeable:
        why = capabilities.not_mergeable or f"its adapter/ holds {capabilities.adapter}"
        message = NOT_MERGEABLE_MESSAGE.format(method=method, why=why)
        log.warning(message)
        merge = False

    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        merged = MERGERS[capabilities.adapter](settings, adapter, dtype) if merge and format == "hf" else None
        if format != "hf":
            gguf = export_gguf(settings, adapter, tmp, format, dtype)
            kind, what, notes = format, gguf_text(method, run, format), gguf.card_notes()
        elif merged is not None:
            merged.model.save_pretrained(tmp)  # safetensors
            merged.tokenizer.save_pretrained(tmp)
            kind, what, notes = "merged", _merged_text(method, run), _merged_notes(merged)
        else:
            _copy_adapter(adapter, tmp)
            kind, what, notes = ADAPTER_KINDS[capabilities.adapter], _adapter_text(settings.peft, run), []
            notes += [message] if message else []
        metrics = run_dir.read_metrics() if run_dir.metrics.is_file() else None
        if gguf:
            card = gguf_card(settings, metrics, format, gguf.file.name, what, notes)
            (tmp / "Modelfile").write_text(ollama_modelfile(settings, gguf.file.name, format))
            gguf.file = out / gguf.file.name
        else:
            card = model_card(settings, metrics, kind, str(out), what, notes)
        (tmp / "README.md").write_text(card)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(
        out=out,
        method=method,
        merged=merged is not None or format == "gguf",
        adapter_bytes=folder_bytes(adapter),
        out_bytes=folder_bytes(out),
        dtype=merged.dtype if merged else (gguf.dtype if gguf else None),
        max_logit_diff=merged.max_logit_diff if merged else None,
        trained_as_logit_diff=merged.trained_as_logit_diff if merged else None,
        message=message,
        gguf=gguf,
    )


def _copy_adapter(adapter: Path, dest: Path) -> None:
    for path in adapter.iterdir():
        if path.name == PEFT_README:
            continue
        if path.is_dir():
            shutil.copytree(path, dest / path.name)
        else:
            shutil.copy2(path, dest / path.name)


def _merged_text(method: str, run) -> str:
    return (
        f"A plain transformers model: the `{method}` weights trained in run `{run}` merged into the base model's "
        "weights (peft `merge_and_unload`). Loads with `AutoModelFor...from_pretrained`; peft is not needed."
    )


def _adapter_text(peft_settings, run) -> str:
    method = peft_settings.method
    if peft_settings.capabilities.adapter == "model":
        return f"The whole model trained with `{method}` in run `{run}` (nothing to merge); peft is not needed."
    return f"The `{method}` adapter trained in run `{run}`, alone: load it on top of the base model."


def _merged_notes(merged: MergedModel) -> list[str]:
    notes = [f"precision: {merged.precision_note}"]
    if merged.max_logit_diff is not None:
        notes.append(
            f"merge check: max |logit difference| vs base + adapter on the probe sentences: {merged.max_logit_diff:.3g}"
        )
    if merged.trained_as_logit_diff is not None:
        notes.append(
            f"vs the model as trained (4-bit base + adapter): max |logit difference| {merged.trained_as_logit_diff:.3g}"
        )
    return notes
