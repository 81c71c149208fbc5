"""A job's settings: the config validated once, with what a job needs beyond the checked groups."""

import dataclasses

from omegaconf import DictConfig

from peftlab.config import RunSettings, validate


def job_settings(cfg: DictConfig, check_with_peft: bool = True) -> RunSettings:
    """cfg validated, plus the run folder's paths and the composed config (for config.yaml, the trackers and the
    Trainer, callbacks and logger nodes build_trainer instantiates). check_with_peft: as config.validate's."""
    settings = validate(cfg, check_with_peft=check_with_peft)
    paths = cfg.get("paths") or {}
    return dataclasses.replace(
        settings, output_dir=paths.get("output_dir"), checkpoint_dir=paths.get("checkpoint_dir"), composed=cfg
    )
