"""build_trainer(settings): the config's Trainer arguments and callback groups reach one Lightning Trainer."""

import pytorch_lightning as pl
from conftest import CONF
from hydra import compose, initialize_config_dir

from peftlab.run import job_settings
from peftlab.trainer.build import build_trainer


def test_progress_bar_off_on_the_command_line_drops_the_callback_groups_bar(tmp_path):
    # `trainer.enable_progress_bar=false` alone (the callbacks group still holds a RichProgressBar): Lightning would
    # refuse the pair with a MisconfigurationException.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.enable_progress_bar=false", f"paths.output_dir={tmp_path}"])
    assert cfg.callbacks.progress_bar is not None
    trainer = build_trainer(job_settings(cfg))
    assert not any(isinstance(c, pl.callbacks.ProgressBar) for c in trainer.callbacks)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={tmp_path}"])
    assert any(isinstance(c, pl.callbacks.ProgressBar) for c in build_trainer(job_settings(cfg)).callbacks)
