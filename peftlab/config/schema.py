"""Typed schemas of each config group; `__post_init__` rejects values that would fail later, and says why.

Hydra types and closes each group's keys with them while composing (config/store.py); validate() builds them, which
runs the checks here before any model or data is loaded. A failed check raises SettingError(key, value, allowed).
"""

from dataclasses import dataclass, field
from typing import Any

from peftlab.config.checks import check, check_choice, check_positive
from peftlab.config.dataset_schema import DatasetSettings
from peftlab.config.objective_schema import ObjectiveSettings
from peftlab.config.tasks import ARCHITECTURES

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
# Lightning's strategy names accepted as hardware.strategy -> whether Lightning runs it on GPUs only. A copy, not
# Lightning's StrategyRegistry: validation runs before torch is imported, in about a second, and also where torch is
# not installed (the SageMaker launch's machine); importing Lightning imports torch and takes seconds more.
# tests/test_config.py checks every row against the registry. What a strategy needs on the training machine
# (DeepSpeed's package) Lightning answers there itself (trainer/hardware.py).
STRATEGIES = {
    "auto": False,
    "ddp": False,
    "ddp_find_unused_parameters_true": False,
    "ddp_spawn": False,
    "fsdp": True,
    "deepspeed": True,
    "deepspeed_stage_1": True,
    "deepspeed_stage_2": True,
    "deepspeed_stage_2_offload": True,
    "deepspeed_stage_3": True,
    "deepspeed_stage_3_offload": True,
}


@dataclass
class ModelSettings:
    """Base model: where to load it from and the family's defaults."""

    name: str
    name_or_path: str
    tokenizer: str | None = None
    dtype: str = "float32"
    # What writes name_or_path once before it is loaded, a `_target_` called with these settings (the offline
    # sandbox, peftlab/offline/: a tiny twin built from_config(model_type, config_overrides), a GGUF conversion of
    # the file `gguf` names); null: name_or_path is loaded as it is (a hub id, or a folder). A hub id in
    # name_or_path loads the hub's weights whatever init says.
    init: dict[str, Any] | None = None
    # encoder (BERT, DeBERTa), seq2seq (T5) or causal (GPT-2, BLOOM): with dataset.task it picks the head.
    architecture: str = "encoder"
    model_type: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    # A twin's tokenizer (a `_target_` called with the twin's folder; see offline/twin_tokenizers.py). The twin's
    # vocabulary size and special token ids follow it.
    twin_tokenizer: dict[str, Any] | None = None
    # A GGUF conversion's file: {file, package (the installed package holding it; null: file is a path), install}.
    gguf: dict[str, Any] | None = None
    # Tokenizers without a pad token (GPT-2): "eos" pads with the end-of-sequence token.
    pad_token: str | None = None
    head_modules: list[str] = field(default_factory=lambda: ["classifier"])
    # Per method option (lora, ia3, adapters, ...): the family's targets and known recipe; which methods a family
    # refuses is each method's own record (conf/peft/*.yaml capabilities.refused_families).
    peft_defaults: dict[str, Any] = field(default_factory=dict)
    # Whether float16 (16-mixed, 16-true) is safe for this family. false (T5): its activations overflow float16's
    # range, so precision=auto picks bf16-mixed where the GPU has it and 32-true elsewhere (T4, V100), and an explicit
    # float16 precision is refused.
    float16: bool = True
    # Every n-th decoder layer keeps only its input in training and is recomputed in the backward (transformers'
    # activation checkpointing); 0: none. Memory for compute: SmolLM2's 30 layers of activations set a run's peak.
    activation_checkpointing: int = 0

    def __post_init__(self) -> None:
        check(bool(self.name_or_path), "name_or_path", self.name_or_path, "a hub id or a local folder")
        check(self.activation_checkpointing >= 0, "activation_checkpointing", self.activation_checkpointing,
              "0 (off) or n >= 1: every n-th layer recomputed in the backward")  # fmt: skip
        check_choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        check(self.init is None or "_target_" in self.init, "init", self.init, "null or {_target_: ...}")
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check(self.pad_token in (None, "eos"), "pad_token", self.pad_token, "null or eos")


@dataclass
class HardwareSettings:
    """The machine a run trains on, wherever it is: this computer, a cluster's nodes or SageMaker instances. Which
    instances a SageMaker job rents is the `sagemaker` group's (config/sagemaker_schema.py, read by the launch)."""

    name: str
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    # Dropout masks of CPU tensors drawn from numpy's PCG64 instead of torch's one-thread bernoulli_ (same
    # distribution, seeded from torch's generator): 10 % off a SmolLM2 LoRA step on CPU (models/fast_dropout.py).
    # GPUs keep torch's dropout either way; false restores torch's masks bit for bit.
    fast_dropout: bool = True
    # A memory budget for training (GB; null: none): each batch of dataset.batch_size rows is cut into the largest
    # micro-batches that fit, their gradients accumulated into the same step (trainer/memory_budget.py).
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        check_choice("accelerator", self.accelerator, ACCELERATORS)
        check(self.max_memory_gb is None or self.max_memory_gb > 0, "max_memory_gb", self.max_memory_gb,
              "null (no budget) or a number of GB > 0")  # fmt: skip
        check_choice("precision", str(self.precision), PRECISIONS)
        check(self.num_nodes >= 1, "num_nodes", self.num_nodes, "must be >= 1")
        check(
            _devices_ok(self.devices, self.accelerator),
            "devices",
            self.devices,
            "an integer >= 1 or auto (on cpu: the number of processes); on GPUs also -1 (all) or indices like [0,1]",
        )
        check_choice("strategy", self.strategy, tuple(STRATEGIES))
        # Whether the machine has the strategy's package and the devices is checked on it (trainer/hardware.py).
        check(
            not (STRATEGIES[self.strategy] and self.accelerator == "cpu"),
            "strategy",
            self.strategy,
            "runs on GPUs only (Lightning); on CPU use hardware=ddp hardware.accelerator=cpu",
        )


def _devices_ok(devices: Any, accelerator: str) -> bool:
    """What Lightning's Trainer(devices=...) accepts for this accelerator (CPU: a process count only), without torch.

    Lightning's own parsers (its accelerators' parse_devices) import torch and count the GPUs of the machine they run
    on: they answer on the training machine (trainer/hardware.py); tests/test_config.py holds this rule to them.
    """
    if devices == "auto":
        return True
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or (devices == -1 and accelerator != "cpu")
    if isinstance(devices, list) and accelerator != "cpu":
        ints = [d for d in devices if isinstance(d, int) and not isinstance(d, bool) and d >= 0]
        return bool(devices) and len(ints) == len(devices) == len(set(ints))
    return False


@dataclass
class TrainerSettings:
    """The Trainer keys we check; other Trainer arguments pass through to Lightning unchanged."""

    max_epochs: int = 3
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    val_check_interval: float | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None

    def __post_init__(self) -> None:
        check(
            self.max_epochs >= 1,
            "max_epochs",
            self.max_epochs,
            "must be >= 1 (for step-based runs set trainer.max_steps too)",
        )
        check(self.max_steps == -1 or self.max_steps >= 1, "max_steps", self.max_steps, "-1 (no limit) or >= 1")
        check(
            self.accumulate_grad_batches >= 1, "accumulate_grad_batches", self.accumulate_grad_batches, "must be >= 1"
        )
        check(self.log_every_n_steps >= 1, "log_every_n_steps", self.log_every_n_steps, "must be >= 1")
        check(
            self.gradient_clip_val is None or self.gradient_clip_val >= 0,
            "gradient_clip_val",
            self.gradient_clip_val,
            "null or >= 0",
        )
        for key in ("val_check_interval", "limit_train_batches", "limit_val_batches"):
            check_positive(key, getattr(self, key), allow_none=True)


@dataclass
class OptimSettings:
    optimizer: dict[str, Any] = field(default_factory=dict)
    warmup_ratio: float = 0.06
    # Optimizer steps the schedule spans; null: the run's own. A run stopped before them (trainer.max_steps) and
    # continued with resume=auto is the same as one uninterrupted run: compare's successive-halving rungs.
    schedule_steps: int | None = None

    def __post_init__(self) -> None:
        check(self.schedule_steps is None or self.schedule_steps >= 1, "schedule_steps", self.schedule_steps,
              "null (the run's own length) or >= 1")  # fmt: skip
        check("_target_" in self.optimizer, "optimizer", self.optimizer, "needs a _target_ (e.g. torch.optim.AdamW)")
        check_positive("optimizer.lr", self.optimizer.get("lr"))
        check(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", self.warmup_ratio, "must be in [0, 1)")


@dataclass
class PathSettings:
    """Where a run writes (conf/paths/): its folder, its checkpoints, and the cache kept across runs."""

    output_dir: str | None = None
    checkpoint_dir: str | None = None
    cache_dir: str | None = None


@dataclass
class RunSettings:
    """The validated run: what the pipeline stages read (instantiable groups stay in the DictConfig)."""

    model: ModelSettings
    peft: Any
    dataset: DatasetSettings
    hardware: HardwareSettings
    trainer: TrainerSettings
    optim: OptimSettings
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    seed: int = 42
    ckpt_path: str | None = None
    resume: str | None = None  # null or auto: continue from paths.checkpoint_dir/last.ckpt when it exists
    shape: str = "classify"  # from (dataset.task, model.architecture); see config/tasks.py
    # Where the run folder is (paths.output_dir, paths.checkpoint_dir), and the composed config itself: written as
    # config.yaml, logged as the trackers' hyper-parameters, and the Trainer/callbacks/logger nodes instantiated
    # from it. Set by peftlab.run for a job (run/settings.py); None where only the groups are checked (serve).
    output_dir: str | None = None
    checkpoint_dir: str | None = None
    composed: Any = None
