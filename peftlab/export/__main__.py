"""`python -m peftlab.export run=<run dir> out=<folder> [merge=true|false] [format=hf|gguf|gguf_lora] [dtype=...]`
(keys: conf/export.yaml)."""

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from peftlab.cli import run_command
from peftlab.conf import CONFIG_PATH
from peftlab.errors import ConfigError

if TYPE_CHECKING:
    from peftlab.export import ExportResult

USAGE = (
    "python -m peftlab.export run=<run folder> out=<new folder> [merge=true|false] [format=hf|gguf|gguf_lora] "
    "[dtype=...]"
)


def arguments(cfg: DictConfig) -> dict:
    """export_run's arguments from conf/export.yaml's keys; a missing or non-boolean value is one line naming it."""
    for key in ("run", "out"):
        if OmegaConf.is_missing(cfg, key) or not cfg[key]:
            raise ConfigError(f"{key}= is required ({USAGE})")
    if not isinstance(cfg.merge, bool):
        raise ConfigError(f"merge={cfg.merge}: true or false")
    return {
        "run": str(cfg.run),
        "out": str(cfg.out),
        "merge": cfg.merge,
        "dtype": str(cfg.dtype),
        "format": str(cfg.format),
    }


def export(cfg: DictConfig) -> "ExportResult":
    """The arguments are checked before the exporter (torch, transformers, gguf) is imported."""
    checked = arguments(cfg)
    from peftlab.export import export_run

    result = export_run(**checked)
    print(summary(result))
    return result


def summary(result: "ExportResult") -> str:
    mib = 2**20
    what = f"merged {result.method} model ({result.dtype})" if result.merged else f"{result.method} adapter"
    if result.gguf:
        what = f"{what} as GGUF: {result.gguf.file.name}"
    lines = [
        f"exported the {what} to {result.out}",
        f"size on disk: {result.out_bytes / mib:.2f} MiB (the run's adapter/: {result.adapter_bytes / mib:.2f} MiB)",
    ]
    if result.max_logit_diff is not None:
        lines.append(f"max |logit diff| merged vs base + adapter (probe sentences): {result.max_logit_diff:.3g}")
    if result.trained_as_logit_diff is not None:
        lines.append(f"max |logit diff| merged vs the 4-bit model as trained: {result.trained_as_logit_diff:.3g}")
    if result.gguf:
        lines += result.gguf.card_notes()
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    run_command(export, cfg)


if __name__ == "__main__":
    main()
