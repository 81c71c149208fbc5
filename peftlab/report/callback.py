"""Hydra callback: at the end of a `-m` sweep, write the report into the sweep folder."""

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from peftlab.errors import PeftlabError
        from peftlab.report import write_report

        sweep_dir = config.hydra.sweep.dir
        if config.get("dry_run"):  # launch_sagemaker.py -m dry_run=true: nothing ran
            return
        try:
            write_report(sweep_dir)
        except PeftlabError as err:  # e.g. every job failed: say so, but do not hide the jobs' own errors
            log.warning("sweep report not written: %s", err)
            return
        log.info("sweep report: %s/summary.md", sweep_dir)
