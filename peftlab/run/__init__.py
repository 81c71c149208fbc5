"""Run stage, its public surface: train(cfg) and evaluate(cfg), what the training command (peftlab.train, train.py)
and evaluate.py call; fit(cfg) for callers that want the trained objects back; score_checkpoints(cfg, checkpoints),
how peftlab.compare scores a run's checkpoints on its test split.

Each validates once, first, so a bad value fails before any data or weights load: our own checks in about a second,
before torch is imported; what peft checks of its config class a few seconds later (importing peft imports torch).
train() reads and checks the data files between the two: a bad row is named about 2 s after the command starts.
"""

from omegaconf import DictConfig

from peftlab.config import validate
from peftlab.config.validate import check_peft_method
from peftlab.run.collector import collections_deferred, imports_frozen
from peftlab.run.settings import job_settings


def train(cfg: DictConfig) -> float | None:
    """One training run; returns its best validation metric (the value a sweeper optimises)."""
    with collections_deferred():  # until the fit starts (run/collector.py)
        settings = job_settings(cfg, check_with_peft=False)
        from peftlab.data.checks import checked_splits  # here: datasets would slow --help and Hydra's refusals

        checked_splits(settings.dataset)  # a bad file or row is named before peft, torch and Lightning load
        check_peft_method(settings)
        from peftlab.run import distributed, training

        imports_frozen()  # the libraries are in; the job's own objects stay collectable (run/collector.py)
        if distributed.needs_own_process_group(settings.hardware):  # a -m sweep job on several processes
            return distributed.run_as_process_group()
        return training.fit(settings).best_metric


def fit(cfg: DictConfig):
    """One training run in this process, returning its RunResult (module, trainer, data, metrics): for tests,
    benchmarks and tools that look inside the trained model."""
    from peftlab.run import training

    return training.fit(job_settings(cfg))


def evaluate(cfg: DictConfig) -> list[dict]:
    """Score trained runs and/or base models on cfg.dataset; one row of metrics each.

    With adapter=/compare=/source= the model and method come from each run's config.yaml, so the command line's
    model= is not checked up front (each run's merged config is validated before anything loads).
    """
    if not any(cfg.get(key) for key in ("adapter", "compare", "source")):
        validate(cfg)
    from peftlab.run import evaluation

    return evaluation.evaluate(cfg)


def score_checkpoints(cfg: DictConfig, checkpoints: list[str]) -> list[dict]:
    """One row of metrics per training checkpoint of one run, on cfg.split (validation or test), in that order.

    cfg is the run's own config (RunDir.read_config()) with split= set: its model, method, data and held-out rows.
    The model and data are built once and each checkpoint's trainable weights loaded over the same base.
    """
    from peftlab.run import evaluation

    return [row for row, _ in evaluation.score_each(cfg, None, checkpoints)]


def forgetting(cfg: DictConfig, texts: list[str], adapter: str) -> dict:
    """The run's loss on `texts` (a general-text sample its task never saw) with its adapter and with the base alone,
    and the change: what peftlab.compare reports as forgetting. cfg is the run's own config (RunDir.read_config())."""
    from peftlab.run.lm_loss import base_and_adapted_loss

    base, trained = base_and_adapted_loss(cfg, texts, adapter)
    return {"base_loss": base, "loss": trained, "forgetting": trained - base}
