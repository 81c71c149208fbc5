"""The exported folder's README.md, in the Hugging Face model card style: what it is, how it scored, how to load it.

The YAML front matter is what the hub indexes (library_name, base_model, tags, datasets); the body is filled from
the run's config.yaml (model, method and its hyper-parameters, dataset) and metrics.json (validation metrics).
"""

import json
from pathlib import Path

from peftlab.config import RunSettings
from peftlab.config.tasks import CAUSAL_SHAPES, LABELLED_SHAPES
from peftlab.models.loading import AUTO_CLASSES

# Task shape -> the hub's pipeline tag.
PIPELINE_TAGS = {
    "classify": "text-classification",
    "choose": "multiple-choice",
    "seq2seq": "text2text-generation",
    **dict.fromkeys(CAUSAL_SHAPES, "text-generation"),
}

# What the folder holds -> the library that loads it (front matter) and how to load it (the snippet's template).
LIBRARIES = {"merged": "transformers", "peft": "peft", "parallel": "peftlab", "gguf": "gguf", "gguf_lora": "gguf"}
LOAD_SNIPPETS = {
    "merged": """from transformers import {auto}, AutoTokenizer

model = {auto}.from_pretrained("{out}")  # no peft needed
tokenizer = AutoTokenizer.from_pretrained("{out}")""",
    "peft": """{quant_imports}from peft import PeftModel
from transformers import {auto}, AutoTokenizer
{quant_config}
base = {auto}.from_pretrained("{base}"{base_args})
model = PeftModel.from_pretrained(base, "{out}")
tokenizer = AutoTokenizer.from_pretrained("{out}")""",
    "parallel": """from transformers import {auto}, AutoTokenizer

from peftlab.models.parallel_adapter import load_parallel_adapters  # peftlab's own format

base = {auto}.from_pretrained("{base}"{base_args})
model = load_parallel_adapters(base, "{out}")
tokenizer = AutoTokenizer.from_pretrained("{out}")""",
}
QLORA_IMPORTS = "import torch\n"
QLORA_CONFIG = """from transformers import BitsAndBytesConfig

# as trained: the base in 4-bit, the head kept out of quantisation
quantization_config = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="{quant_type}",
    bnb_4bit_use_double_quant={double_quant},
    bnb_4bit_compute_dtype={compute_dtype},
    llm_int8_skip_modules={head},
)
"""


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).expanduser().exists() or name_or_path.startswith(("/", ".", "~"))


def front_matter(settings: RunSettings, kind: str) -> str:
    base = settings.model.name_or_path
    lines = ["---", f"library_name: {LIBRARIES[kind]}"]
    if not is_local(base):  # a hub id; a local folder (packaged model, offline twin) means nothing on the hub
        lines.append(f"base_model: {base}")
    lines.append(f"pipeline_tag: {PIPELINE_TAGS[settings.shape]}")
    lines.append("tags:")
    lines += [f"  - {tag}" for tag in ("peftlab", settings.peft.method, settings.model.name)]
    if settings.dataset.hub_id:
        lines += ["datasets:", f"  - {settings.dataset.hub_id}"]
    return "\n".join([*lines, "---"])


def metrics_table(metrics: dict | None) -> str:
    if not metrics or not metrics.get("best"):
        return "No metrics.json in the run folder."
    best, last = metrics["best"], metrics.get("last") or {}
    names = sorted(k for k in best if k.startswith("val/"))
    rows = [
        f"| metric | best (epoch {best.get('epoch')}, step {best.get('step')}) | last |",
        "|---|---:|---:|",
        *(f"| {n} | {best[n]:.4f} | {_number(last.get(n))} |" for n in names),
    ]
    params = metrics.get("params", {})
    if params:
        share = f"{params['trainable']:,} of {params['total']:,} ({params['trainable_pct']} %)"
        rows.append(f"\nTrainable parameters: {share}.")
    return "\n".join(rows)


def hyperparameters_table(settings: RunSettings) -> str:
    values = settings.peft.values()  # as the YAML spells them: peft.<key>
    rows = ["| key | value |", "|---|---|"]
    rows += [f"| `peft.{k}` | {_value(v)} |" for k, v in values.items()]
    rows += [
        f"| `dataset.max_length` | {settings.dataset.max_length} |",
        f"| `dataset.batch_size` | {settings.dataset.batch_size} |",
        f"| `seed` | {settings.seed} |",
    ]
    return "\n".join(rows)


def load_snippet(settings: RunSettings, kind: str, out: str) -> str:
    base_args, quant_imports, quant_config = "", "", ""
    if settings.shape in LABELLED_SHAPES:
        base_args = f", num_labels={len(settings.dataset.labels)}"
    if kind == "peft" and settings.peft.capabilities.base_4bit:  # the method's record: trained on a 4-bit base
        quant = settings.peft
        head = list(settings.model.head_modules) if settings.shape in LABELLED_SHAPES else None
        quant_imports = QLORA_IMPORTS
        quant_config = QLORA_CONFIG.format(
            quant_type=quant.quant_type,
            double_quant=quant.double_quant,
            compute_dtype=_compute_dtype(quant.compute_dtype),
            head=head,
        )
        base_args += ", quantization_config=quantization_config"
    code = LOAD_SNIPPETS[kind].format(
        auto=AUTO_CLASSES[settings.shape],
        out=out,
        base=settings.model.name_or_path,
        base_args=base_args,
        quant_imports=quant_imports,
        quant_config=quant_config,
    )
    return f"```python\n{code}\n```"


def model_card(
    settings: RunSettings,
    metrics: dict | None,
    kind: str,
    out: str,
    what: str,
    notes: list[str],
) -> str:
    """README.md text. kind: merged | peft | parallel; what: one line saying what the folder holds."""
    dataset = settings.dataset.hub_id or f"{settings.dataset.name} (local data)"
    if settings.dataset.name == "demo":
        dataset = "demo (synthetic sentiment rows generated by peftlab, a smoke test, not a benchmark)"
    labels = ", ".join(settings.dataset.labels) if settings.shape in LABELLED_SHAPES else "-"
    parts = [
        front_matter(settings, kind),
        f"# {settings.model.name} + {settings.peft.method} on {settings.dataset.name}",
        what,
        "\n".join(
            [
                f"- base model: `{settings.model.name}` (`{settings.model.name_or_path}`)",
                f"- method: `{settings.peft.method}`",
                f"- dataset: {dataset}, task `{settings.dataset.task}`, labels: {labels}",
                *(f"- {note}" for note in notes),
            ]
        ),
        "## Validation metrics",
        metrics_table(metrics),
        "## Method and hyper-parameters",
        hyperparameters_table(settings),
        "## How to load",
        load_snippet(settings, kind, out),
        "Exported with `python -m peftlab.export` (peftlab).",
    ]
    return "\n\n".join(parts) + "\n"


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _value(value) -> str:
    return f"`{json.dumps(value)}`" if isinstance(value, (list, dict)) else f"`{value}`"


def _compute_dtype(name: str) -> str:
    """compute_dtype=auto (models/methods.py resolved_compute_dtype) as the expression that decides it at load."""
    if name == "auto":
        return "torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32"
    return f"torch.{name}"
