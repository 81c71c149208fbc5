"""What a comparison runs, from conf/compare.yaml and the command line: methods, budgets, seeds, forwarded overrides.

Every method is composed and validated as its jobs will be before any job starts: a bad override or a method the
model refuses fails in seconds with one line, not after the first method's sweeps.
"""

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from peftlab.compare.forgetting import read_texts
from peftlab.config.tasks import CAUSAL_SHAPES
from peftlab.data.heldout import HELD_OUT_KEYS
from peftlab.errors import ConfigError

# Keys the protocol sets itself in every job -> where to set them instead: a command line that set them would be
# overridden, so it is refused.
PROTOCOL_KEYS = {
    "peft": "compare.methods",
    "peft.lr": "each method's peft.lr_range (tuned)",
    "optim.optimizer.lr": "each method's peft.lr_range (tuned)",
    "seed": "compare.tune.seed, compare.confirm.seeds",
    "hydra.sweep.dir": "compare.out",
    "hydra.run.dir": "compare.out",
    "dataset.max_train_rows": "compare.tune.max_train_rows, compare.confirm.max_train_rows",
    "trainer.max_steps": "compare.tune.max_steps, compare.confirm.max_steps",
    "trainer.max_epochs": "compare.tune.max_steps, compare.confirm.max_steps",
    "trainer.val_check_interval": "compare.tune.val_check_interval, compare.confirm.val_check_interval",
    "trainer.check_val_every_n_epoch": "compare.tune.val_check_interval, compare.confirm.val_check_interval",
}
log = logging.getLogger(__name__)

# Fractions of the largest confirmed run's training FLOPs and of its training seconds: the report's budgets.
BUDGETS = (0.1, 0.25, 0.5, 1.0)
EPOCHS_UNBOUNDED = 10_000  # max_steps ends the stages' runs
MIN_SEEDS = 3  # a 95 % t interval over 2 seeds is ±12.7 std/√2: too wide to separate anything


@dataclass
class Plan:
    """compare.* of conf/compare.yaml, and the overrides every training job gets."""

    methods: list[str]
    out: Path
    forwarded: list[str]  # the command line's training overrides (model=, dataset=, ...) plus the test split's keys
    trials: int
    tune_seed: int
    tune_steps: int  # the tuning budget's optimizer steps (halving's last rung)
    tune_overrides: list[str]
    seeds: list[int]
    confirm_overrides: list[str]
    cwd: Path  # the folder the command started in: the sweeps run there, so relative paths mean the same to them
    default_arm: bool = True
    extend: int = 0  # tuning rates tried past an end of lr_range, at most (search.tune)
    rung_steps: list[int] = field(default_factory=list)  # successive halving's rungs in steps; empty: budget-matched
    eta: int = 3  # halving: the best ceil(n / eta) trials of a rung go on to the next
    keep_checkpoints: bool = False  # True: confirm's unread checkpoints stay after the test stage
    forgetting_texts: list[str] = field(default_factory=list)  # general text (compare/forgetting.py); empty: off
    lr_ranges: dict[str, list[float]] = field(default_factory=dict)
    default_lrs: dict[str, float] = field(default_factory=dict)


# Every job gets these with the values the protocol resolved (compare.yaml sets test_split, conf/config.yaml does not).
HELD_OUT_OVERRIDES = tuple(f"dataset.{key}" for key in HELD_OUT_KEYS)


def forwarded_overrides(command_line: list[str], cfg: DictConfig) -> list[str]:
    """The command line's overrides that reach every training job (compare.* stay here), and the held-out split."""
    kept = []
    for override in command_line:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.startswith("compare.") or key in HELD_OUT_OVERRIDES:  # held-out keys: appended below, resolved
            continue
        if key in PROTOCOL_KEYS:
            raise ConfigError(f"{override}: the protocol sets {key} in every job; set {PROTOCOL_KEYS[key]}")
        kept.append(override)
    if cfg.dataset.test_split is None:
        raise ConfigError("dataset.test_split=null: the comparison is decided on a held-out test split; set one")
    return [*kept, *(f"{key}={OmegaConf.select(cfg, key)}" for key in HELD_OUT_OVERRIDES)]


def validation_interval(max_steps: int, given: int | None) -> int:
    """Steps between validations: `given`, else the largest divisor of max_steps within half the smallest budget's
    steps, so every budget the report names has a validated checkpoint even when steps differ in FLOPs or seconds
    (the comparisons of 2026-12-02 validated every 50 of 100 steps: 10 % and 25 % had none)."""
    if given is not None:
        return given
    limit = max(1, int(max_steps * BUDGETS[0] / 2))
    return max(d for d in range(1, limit + 1) if max_steps % d == 0)


def budget_overrides(stage: DictConfig) -> list[str]:
    """A stage's budget as training overrides: steps, not epochs, decide the length; validation every N steps."""
    interval = validation_interval(stage.max_steps, stage.val_check_interval)
    if interval < 1 or stage.max_steps % interval:
        raise ConfigError(
            f"val_check_interval={interval}: steps between validations, dividing max_steps="
            f"{stage.max_steps} (the last step is then validated too)"
        )
    if interval > stage.max_steps * BUDGETS[0]:
        log.warning(
            "val_check_interval=%d of max_steps=%d: the report's %g %% budgets may have no validated checkpoint "
            "(null: every %d steps)",
            interval, stage.max_steps, BUDGETS[0] * 100, validation_interval(stage.max_steps, None),
        )  # fmt: skip
    rows = "null" if stage.max_train_rows is None else stage.max_train_rows
    return [
        f"dataset.max_train_rows={rows}",
        f"trainer.max_steps={stage.max_steps}",
        f"trainer.max_epochs={EPOCHS_UNBOUNDED}",
        f"trainer.val_check_interval={interval}",
        "trainer.check_val_every_n_epoch=null",  # count val_check_interval across epochs
    ]


def rung_steps(rungs: list[float], max_steps: int, interval: int) -> list[int]:
    """Halving's rungs as optimizer steps: each fraction of the tuning budget rounded down to a validation (a rung
    ends on a validated checkpoint, which the next one resumes from); [] for [1.0], every trial on the whole budget."""
    rungs = [float(r) for r in rungs]
    if not rungs or rungs[-1] != 1.0 or any(a >= b for a, b in itertools.pairwise([0.0, *rungs])):
        raise ConfigError(
            f"compare.tune.rungs={rungs}: increasing fractions of the tuning budget ending at 1.0, "
            "e.g. [0.25, 1.0] (successive halving) or [1.0] (every trial on the whole budget)"
        )
    steps = [max(interval, int(r * max_steps) // interval * interval) for r in rungs]
    if len(set(steps)) != len(steps):
        raise ConfigError(
            f"compare.tune.rungs={rungs}: rungs of {steps} steps with a validation every {interval} steps; "
            "space them further or validate more often (compare.tune.val_check_interval)"
        )
    return steps if len(steps) > 1 else []


def make_plan(cfg: DictConfig, command_line: list[str], cwd: Path, check_files: bool = True) -> Plan:
    """The plan, every method's jobs composed and validated first (check_files=False: data folders not looked at)."""
    c = cfg.compare
    methods = list(c.methods)
    if not methods or len(set(methods)) != len(methods):
        raise ConfigError(f"compare.methods={methods}: a list of distinct peft options, e.g. [lora,ia3,full]")
    if len(c.confirm.seeds) < MIN_SEEDS or len(set(c.confirm.seeds)) != len(c.confirm.seeds):
        raise ConfigError(f"compare.confirm.seeds={list(c.confirm.seeds)}: at least {MIN_SEEDS} distinct seeds")
    if c.tune.trials < 2:
        raise ConfigError(f"compare.tune.trials={c.tune.trials}: at least 2 learning rates per method")
    if c.tune.eta < 2:
        raise ConfigError(f"compare.tune.eta={c.tune.eta}: the best 1/eta of a rung go on, eta >= 2 (e.g. 3)")
    if c.tune.extend < 0:
        raise ConfigError(f"compare.tune.extend={c.tune.extend}: rates tried past an end of the range, >= 0")
    plan = Plan(
        methods=methods,
        out=(cwd / c.out).resolve(),
        forwarded=forwarded_overrides(command_line, cfg),
        trials=c.tune.trials,
        tune_seed=c.tune.seed,
        tune_steps=c.tune.max_steps,
        tune_overrides=budget_overrides(c.tune),
        seeds=list(c.confirm.seeds),
        confirm_overrides=budget_overrides(c.confirm),
        cwd=cwd.resolve(),
        default_arm=bool(c.default_arm),
        extend=int(c.tune.extend),
        keep_checkpoints=bool(c.keep_checkpoints),
        rung_steps=rung_steps(
            list(c.tune.rungs), c.tune.max_steps, validation_interval(c.tune.max_steps, c.tune.val_check_interval)
        ),
        eta=int(c.tune.eta),
    )
    for method in methods:
        settings = check_method(plan, method, check_files)
        peft = settings.peft
        if not peft.lr_range:
            raise ConfigError(f"peft.lr_range: not set for peft={method}; declare [low, high] in its YAML")
        plan.lr_ranges[method], plan.default_lrs[method] = list(peft.lr_range), peft.lr
    if c.forgetting.texts:
        if settings.shape not in CAUSAL_SHAPES:
            raise ConfigError(
                f"compare.forgetting.texts: forgetting is measured on causal language models (model="
                f"{settings.model.name} is {settings.shape}); set it to null"
            )
        plan.forgetting_texts = read_texts(c.forgetting.texts, c.forgetting.column, c.forgetting.rows)
    return plan


def check_method(plan: Plan, method: str, check_files: bool = True):
    """Compose and validate the method's training config as its jobs will (the stages' overrides included); returns
    its settings."""
    from hydra import compose

    from peftlab.config import validate

    training = [o for o in plan.forwarded if not o.lstrip("+~").startswith("hydra")]  # launchers: the sweeps' own
    for stage in (plan.tune_overrides, plan.confirm_overrides):
        cfg = compose("config", overrides=[*training, *stage, f"peft={method}"])
        OmegaConf.set_struct(cfg, False)
        cfg.paths.output_dir = str(plan.out)  # ${hydra:runtime...} is not set when composing
        settings = validate(cfg, check_files=check_files)
    return settings
