"""The card and Ollama Modelfile of a GGUF export: how to run the file with llama.cpp and Ollama."""

from peftlab.config import RunSettings
from peftlab.export.card import front_matter, hyperparameters_table, metrics_table
from peftlab.offline.gguf import converted_from

RUN_MERGED = """```sh
llama-cli -m {file} -cnv            # chat, with the chat template stored in the file
llama-server -m {file} --port 8080  # an OpenAI-compatible server
ollama create {tag} -f Modelfile && ollama run {tag}
```"""
RUN_LORA = """```sh
llama-cli -m {base} --lora {file} -cnv
llama-server -m {base} --lora {file} --port 8080
ollama create {tag} -f Modelfile && ollama run {tag}
```
The base must be the model the adapter trained on, as GGUF: {base_note}"""


def base_gguf(settings: RunSettings) -> tuple[str, str]:
    """(the base GGUF to name in commands, a sentence about it)."""
    source = converted_from(settings.model.name_or_path)
    if source is not None:
        return str(source), f"`{source}`, the very file peftlab de-quantised into its base."
    base = settings.model.name_or_path
    return "<base>.gguf", f"`{base}` exported with `format=gguf` from a run of `peft=none`, or llama.cpp's converter."


def gguf_text(method: str, run, fmt: str) -> str:
    if fmt == "gguf":
        return (
            f"One GGUF file for llama.cpp, Ollama and LM Studio: the `{method}` weights trained in run `{run}` merged "
            "into the base, with the tokenizer and chat template in its metadata."
        )
    return f"The `{method}` adapter trained in run `{run}` as a GGUF LoRA, for llama.cpp's `--lora` and Ollama ADAPTER."


def ollama_modelfile(settings: RunSettings, file: str, fmt: str) -> str:
    """Ollama reads the chat template from the GGUF's metadata; the stop token is named so answers end at EOS."""
    lines = [f"FROM ./{file}"] if fmt == "gguf" else [f"FROM {base_gguf(settings)[0]}", f"ADAPTER ./{file}"]
    return "\n".join(lines) + "\n"


def gguf_card(settings: RunSettings, metrics: dict | None, kind: str, file: str, what: str, notes: list[str]) -> str:
    """README.md of a GGUF export; kind: gguf | gguf_lora; file: the .gguf's name inside the folder."""
    base, base_note = base_gguf(settings)
    tag = f"{settings.model.name}-{settings.peft.method}".lower()
    template = RUN_MERGED if kind == "gguf" else RUN_LORA
    parts = [
        front_matter(settings, kind),
        f"# {settings.model.name} + {settings.peft.method} on {settings.dataset.name} (GGUF)",
        what,
        "\n".join(f"- {note}" for note in notes),
        "## Validation metrics (of the run, before export)",
        metrics_table(metrics),
        "## Method and hyper-parameters",
        hyperparameters_table(settings),
        "## How to run",
        template.format(file=file, base=base, tag=tag, base_note=base_note),
        "Exported with `python -m peftlab.export format=" + kind + "` (peftlab).",
    ]
    return "\n\n".join(parts) + "\n"
