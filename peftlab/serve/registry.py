"""AdapterServer: one base model read once, many adapters on it (peft's load_adapter/set_adapter), routed by name.

Adapters of one task shape and peft type share one PeftModel and are switched with set_adapter. Adapters of
another shape (a classifier next to a text-to-SQL adapter, say) need another head class around the same body:
that model is built from config and its body's parameters are *the same tensors* as the one base (not copies),
so the base is still read from disk and held in memory once.
"""

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peft
import torch
import transformers

from peftlab.config import ModelSettings, RunSettings, validate
from peftlab.config.tasks import CAUSAL_SHAPES, LABELLED_SHAPES
from peftlab.data.by_shape import COLLATORS, ENCODERS
from peftlab.data.formatting import required_columns, row_from_text
from peftlab.errors import ConfigError
from peftlab.models.loading import AUTO_CLASSES, load_tokenizer, model_source
from peftlab.rundir import RunDir
from peftlab.serve.inference import BASE, Job, public, run_jobs

# torch's load_state_dict message for tensors of other shapes: the adapter was trained on another base.
SIZE_MISMATCH = re.compile(r"size mismatch")
# Shapes whose model rows are the requests' rows (multiple choice flattens choices into rows, so adapter_names,
# one per request, would not line up with them).
MIXABLE_SHAPES = ("classify", "seq2seq", *CAUSAL_SHAPES)


@dataclass
class ServedAdapter:
    name: str
    folder: Path
    settings: RunSettings
    group: tuple  # (shape, peft type, number of labels): adapters that can share one PeftModel
    encode: Callable  # the training run's encoder (rows -> ids), built once per adapter
    collate: Callable
    mixable: bool = False  # peft can run it in a batch beside other adapters (adapter_names=[...])
    # Prompt learning (prefix, prompt tuning) puts virtual tokens before the padding, which changes the answers of
    # padded rows: such rows run with others of the same length only.
    pads_exactly: bool = True

    def describe(self) -> dict:
        s = self.settings
        return {
            "name": self.name,
            "dataset": s.dataset.name,
            "task": s.dataset.task,
            "shape": s.shape,
            "method": s.peft.method,
            "labels": list(s.dataset.labels),
            "inputs": required_columns(s.dataset)[:-1],  # the row's columns a request fills (the page's boxes)
            "folder": str(self.folder),
        }


def share_backbone(model: torch.nn.Module, backbone: torch.nn.Module) -> None:
    """Make `model`'s body use `backbone`'s Parameter objects (assign=True): shared memory, no copy."""
    body = getattr(model, model.base_model_prefix, None)
    if not isinstance(body, type(backbone)):  # e.g. T5ForConditionalGeneration holds the backbone's parts itself
        body = model
    result = body.load_state_dict(backbone.state_dict(keep_vars=True), strict=False, assign=True)
    if result.unexpected_keys:
        raise ConfigError(f"base body does not fit {type(model).__name__}: unexpected {result.unexpected_keys[:3]}")
    model.tie_weights()  # the language-model head reads the shared input embedding again


def serving_device(name: str) -> torch.device:
    """--device: auto is the GPU where one is visible; a CUDA device asked for must be there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name}: not a device name (cpu, cuda, cuda:1 ...)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible on this machine; use --device cpu")
    return device


class AdapterServer:
    """Load the base once (lazily, from the first adapter's run unless given), then any number of adapters.

    `device`: where the base, the adapters and every batch live ("auto": the GPU where one is visible)."""

    def __init__(self, base: ModelSettings | None = None, device: str = "auto"):
        self.base = base
        self.device = serving_device(device)
        self.tokenizer = None
        self.backbone: torch.nn.Module | None = None
        self.backbone_loads = 0  # how many times base weights were read from disk (tests assert 1)
        self.groups: dict[tuple, peft.PeftModel] = {}
        self.adapters: dict[str, ServedAdapter] = {}
        self.lock = threading.Lock()  # set_adapter changes shared state: one batch at a time (run_jobs)
        # A fast tokenizer's Rust side is mutably borrowed while it encodes (truncation settings): threads that
        # encode requests and the worker that pads and decodes take turns, or it raises "Already borrowed".
        self.tokenizer_lock = threading.RLock()

    def add_adapter(self, name: str, path: str | Path) -> ServedAdapter:
        if name in self.adapters or name == "base":
            raise ConfigError(f"adapter {name}: the name is taken (remove it first, or pick another name)")
        folder, run = RunDir.of_adapter(path)
        if run is None:
            raise ConfigError(f"adapter {name}={path}: no config.yaml beside it; pass the training run's folder")
        settings = validate(run.read_config(), check_files=False)
        capabilities = settings.peft.capabilities  # the method's record (conf/peft/<method>.yaml)
        if not capabilities.servable:
            why = capabilities.not_servable or f"its adapter/ holds {capabilities.adapter}, not a peft adapter"
            raise ConfigError(f"adapter {name}: peft={settings.peft.method} cannot be served ({why})")
        self.base = self.base or settings.model
        self._check_same_base(name, folder, settings.model)
        self._load_backbone()
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        peft_type = adapter_config["peft_type"]
        group = (settings.shape, peft_type, len(settings.dataset.labels) if settings.shape in LABELLED_SHAPES else 0)
        encode = ENCODERS[settings.shape](self.tokenizer, settings.dataset)
        collate = COLLATORS[settings.shape](self.tokenizer)
        mixable = peft_type == "LORA" and not adapter_config.get("use_dora") and settings.shape in MIXABLE_SHAPES
        with self.lock:  # loading and registering together: two requests adding one name cannot both load it
            if name in self.adapters:
                raise ConfigError(f"adapter {name}: the name is taken (remove it first, or pick another name)")
            try:
                if group not in self.groups:
                    model = self._task_model(settings)
                    self.groups[group] = peft.PeftModel.from_pretrained(model, folder, adapter_name=name)
                else:
                    self.groups[group].load_adapter(folder, adapter_name=name)
            except RuntimeError as err:  # size mismatches: made for a model of other dimensions
                if not SIZE_MISMATCH.search(str(err)):  # out of memory, a broken file ...: not a user's mix-up
                    raise
                raise ConfigError(self._other_base_message(name, folder, settings.model, err)) from err
            self.groups[group].eval()
            pads_exactly = not self.groups[group].peft_config[name].is_prompt_learning
            served = ServedAdapter(name, folder, settings, group, encode, collate, mixable, pads_exactly)
            self.adapters[name] = served
        return served

    def _check_same_base(self, name: str, folder: Path, theirs: ModelSettings) -> None:
        ours = self.base
        if (theirs.name, theirs.name_or_path) != (ours.name, ours.name_or_path):
            raise ConfigError(self._other_base_message(name, folder, theirs))

    def _other_base_message(self, name: str, folder: Path, theirs: ModelSettings, err=None) -> str:
        ours = self.base
        detail = f" ({str(err).splitlines()[0][:160]})" if err else ""
        return (
            f"adapter {name} ({folder}) was trained on base model {theirs.name} ({theirs.name_or_path}), but this "
            f"server's base is {ours.name} ({ours.name_or_path}); serve it from a server for that base{detail}"
        )

    def _load_backbone(self) -> None:
        if self.backbone is not None:
            return
        self.tokenizer = load_tokenizer(self.base)
        source = model_source(self.base)
        dtype = getattr(torch, self.base.dtype)
        self.backbone = transformers.AutoModel.from_pretrained(source, dtype=dtype).to(self.device).eval()
        self.backbone_loads += 1

    def _task_model(self, settings: RunSettings) -> torch.nn.Module:
        """The head class this shape needs, built from config, its body sharing the loaded base's tensors."""
        config = transformers.AutoConfig.from_pretrained(model_source(self.base))
        if settings.shape in LABELLED_SHAPES:
            labels = list(settings.dataset.labels)
            config.num_labels = len(labels)
            config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
        config.pad_token_id = self.tokenizer.pad_token_id
        auto_class = getattr(transformers, AUTO_CLASSES[settings.shape])
        with self.device:  # the head is made where the shared body already is
            model = auto_class.from_config(config, dtype=getattr(torch, self.base.dtype))
        share_backbone(model, self.backbone)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        return model.eval()

    def remove_adapter(self, name: str) -> None:
        """Unload one adapter; its group's PeftModel goes too when it was the last one (the base stays loaded)."""
        served = self.served(name)
        with self.lock:
            del self.adapters[name]
            if any(other.group == served.group for other in self.adapters.values()):
                self.groups[served.group].delete_adapter(name)
            else:
                del self.groups[served.group]

    def served(self, name: str) -> ServedAdapter:
        if name not in self.adapters:
            known = ", ".join(self.adapters) or "none loaded"
            raise ConfigError(f"adapter {name!r}: not loaded (adapters: {known})")
        return self.adapters[name]

    def predict(self, name: str, text: str | None = None, fields: dict | None = None, base: bool = False) -> dict:
        """Answer one request with adapter `name` (base=True: the same model with adapters switched off).

        A batch of one through the batched path (serve/inference.py): one way to an answer, whoever asks.
        """
        served = self.served(name)
        job = Job(served, BASE if base else name, self.features(served, text, fields))
        (answer,) = run_jobs(self, [job])
        if isinstance(answer, Exception):
            raise answer
        return public(answer)

    def on_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def features(self, served: ServedAdapter, text: str | None, fields: dict | None) -> dict:
        """Encode one request exactly as training encoded rows (same encoder), with a dummy label; not yet padded."""
        d = served.settings.dataset
        row = dict(fields) if fields else row_from_text(text or "", d)
        *inputs, answer = required_columns(d)
        missing = [c for c in inputs if c not in row]
        if d.task == "generation" and len(missing) < len(inputs):  # a prompt template leaves absent fields blank
            missing = []
        if missing:
            raise ConfigError(f"{d.name} ({d.task}) requests need the fields {inputs}; missing: {missing}")
        row.setdefault(answer, "" if d.task == "generation" else 0)
        with self.tokenizer_lock:
            features = served.encode({key: [value] for key, value in row.items()})
        return {key: values[0] for key, values in features.items()}
