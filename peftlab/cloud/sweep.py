"""A `-m` sweep as SageMaker training jobs: `python launch_sagemaker.py -m peft=lora,ia3 seed=0,1 hardware=g4dn_spot`.

The Hydra launcher (hydra_plugins/peftlab_sagemaker_launcher) hands every sweep point here. Each point is planned as
launch_sagemaker.py plans one job; its id, a hash of its overrides, ends the job's base name and its checkpoint
prefix, so the same command finds the point's jobs again: a Completed one is fetched instead of re-run, one still in
progress is followed, a Failed or Stopped one is re-created and resumes its checkpoints. Then at most
sagemaker.max_parallel jobs run at once, all from one uploaded source tarball, and each ended job becomes the sweep
folder's <n>/ (its model.tar.gz unpacked, .hydra/overrides.yaml as a local job records it, job.json with its status),
so the sweep report reads it like a local sweep.
"""

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from peftlab.cloud.jobs import JobState, SageMakerJobs, run_jobs
from peftlab.cloud.sagemaker_job import JobPlan, console_url, plan_job, train_overrides
from peftlab.cloud.settings import resolve_aws_settings
from peftlab.cloud.source import write_source_tarball
from peftlab.config import validate
from peftlab.config.sagemaker_schema import sagemaker_settings
from peftlab.cost import price_table
from peftlab.cost.sweep import JobCost, check_budget, sweep_cost_lines, sweep_maximum
from peftlab.errors import ConfigError, PeftlabError
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)

JOB_RECORD = "job.json"  # <n>/job.json: the SageMaker job behind a sweep folder's run, and how it ended


@dataclass
class Point:
    index: int
    overrides: list[str]
    cfg: DictConfig  # the point's composed config, without the hydra node
    folder: Path  # <sweep dir>/<n>
    plan: JobPlan
    cost: JobCost


def point_id(hyperparameters: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(hyperparameters.items())).encode()).hexdigest()[:8]


def plan_point(index: int, overrides: list[str], cfg: DictConfig, folder: Path, taken: set[str]) -> Point:
    """Checked as a single launch is (instances, then our config keys, then the AWS settings)."""
    instance = sagemaker_settings(cfg)
    validate(cfg, check_files=False, check_with_peft=False)
    hyperparameters = train_overrides(overrides)
    point = point_id(hyperparameters)
    if point in taken:  # the same overrides twice in one sweep: separate jobs, separate checkpoints
        point = point_id({**hyperparameters, "#": str(index)})
    taken.add(point)
    plan = plan_job(cfg, instance, resolve_aws_settings(cfg.sagemaker), overrides, point=point)
    estimate = cfg.sagemaker.estimate
    steps = estimate.steps or (cfg.trainer.max_steps if cfg.trainer.max_steps > 0 else None)
    cost = JobCost(
        instance.instance_type, instance.instance_count, instance.spot, instance.max_run, steps,
        estimate.seconds_per_step,
    )  # fmt: skip
    return Point(index, list(overrides), cfg, folder, plan, cost)


def sweep_setting(cfg: DictConfig, key: str, minimum: float, integer: bool = False):
    value = cfg.sagemaker.get(key)
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
        raise ConfigError(f"sagemaker.{key}={value!r}: {'an integer' if integer else 'a number'} >= {minimum}")
    return value


class SageMakerSweep:
    """One sweep's state across the launcher's calls (an Optuna study launches a batch at a time)."""

    def __init__(self, hydra_context, config: DictConfig, boto_session=None):
        if config.get("dry_run") is None or "bucket" not in (config.get("sagemaker") or {}):
            raise ConfigError(
                "hydra/launcher=sagemaker: sweep with `python launch_sagemaker.py -m ...` (its config holds the "
                "sagemaker.* launch settings: bucket, role, max_parallel, budget_usd)"
            )
        self.hydra_context, self.config, self.boto_session = hydra_context, config, boto_session
        self.source_uri: str | None = None
        self.taken: set[str] = set()

    def points(self, job_overrides, initial_job_idx: int) -> list[Point]:
        points = []
        for offset, overrides in enumerate(job_overrides):
            index = initial_job_idx + offset
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = cfg.hydra.job.num = index
            HydraConfig.instance().set_config(cfg)  # ${hydra:...} in the point's config resolves to its own job
            folder = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
            task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
            points.append(plan_point(index, list(overrides), task, folder, self.taken))
        return points

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        points = self.points(job_overrides, initial_job_idx)
        first = points[0].cfg
        max_parallel = sweep_setting(first, "max_parallel", 1, integer=True)
        poll_seconds = sweep_setting(first, "poll_seconds", 0.01)
        table = price_table(first.cost)
        planned = (self.config.hydra.sweeper.get("n_trials") or 0) if "hydra" in self.config else 0
        print_plan(points, max_parallel, bool(first.dry_run))
        print("\n".join(sweep_cost_lines(table, [p.cost for p in points], planned)))
        count = max(planned, len(points))
        check_budget(first.sagemaker.get("budget_usd"), sweep_maximum(table, [p.cost for p in points], count), count)
        if first.dry_run:
            if planned > len(points):  # Optuna picks later trials from earlier results: nothing more to show
                print(f"DRY RUN: the study's first {len(points)} of {planned} trials; later ones follow their results")
                raise SystemExit(0)
            return [job_return(p, None) for p in points]
        return self.run(points, max_parallel, poll_seconds)

    def run(self, points: list[Point], max_parallel: int, poll_seconds: float) -> list[JobReturn]:
        from botocore.exceptions import BotoCoreError, ClientError

        jobs = SageMakerJobs(points[0].plan.aws.region, self.boto_session)
        by_index, ended = {p.index: p for p in points}, {}

        def on_end(index: int, state: JobState) -> None:
            ended[index] = fetch(jobs, by_index[index], state)

        try:
            to_create, running = [], {}
            for point in points:
                state = jobs.latest(point.plan.base_job_name)
                if state and state.status == "Completed":
                    log.info("#%d: %s already completed; fetching its model.tar.gz", point.index, state.name)
                    on_end(point.index, state)
                elif state and not state.ended:
                    running[point.index] = state.name  # an earlier invocation's job: followed, not duplicated
                else:
                    to_create.append((point.index, point.plan))
            run_jobs(jobs, to_create, running, lambda: self.upload_source(jobs, points[0]), on_end, max_parallel,
                     poll_seconds)  # fmt: skip
        except (ClientError, BotoCoreError) as err:
            raise PeftlabError(
                f"SageMaker: {err}; jobs already created keep running: the same command follows them again"
            ) from err
        return [job_return(p, ended.get(p.index)) for p in points]

    def upload_source(self, jobs: SageMakerJobs, point: Point) -> str:
        """The one source tarball every job of the sweep runs (the SDK takes an s3://...tar.gz as is)."""
        if self.source_uri is None:
            uri = f"{point.plan.s3_root}/code/sweeps/{time.strftime('%Y%m%d-%H%M%S')}/peftlab-source.tar.gz"
            with tempfile.TemporaryDirectory(prefix="peftlab-source-") as staging:
                self.source_uri = jobs.upload(write_source_tarball(point.cfg, Path(staging)), uri)
            log.info("source tarball: %s", self.source_uri)
        return self.source_uri


def fetch(jobs: SageMakerJobs, point: Point, state: JobState) -> JobState:
    """<n>/: the job's model.tar.gz unpacked (Completed only), Hydra's record of the point, and job.json."""
    from botocore.exceptions import BotoCoreError, ClientError

    job = RunDir(point.folder)
    job.overrides.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(point.overrides), job.overrides)
    OmegaConf.save(point.cfg, job.hydra_config)
    if state.status == "Completed":
        try:
            jobs.unpack(state.model_artifact or "", point.folder)
        except (ClientError, BotoCoreError, PeftlabError, OSError) as err:
            state = JobState(state.name, state.status, f"model.tar.gz not fetched: {err}", state.model_artifact)
    record = {
        "job": state.name, "status": state.status, "failure_reason": state.failure_reason,
        "model_artifact": state.model_artifact, "checkpoints": point.plan.checkpoint_uri,
        "console": console_url(point.plan.aws.region, state.name),
    }  # fmt: skip
    (point.folder / JOB_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return state


def job_return(point: Point, state: JobState | None) -> JobReturn:
    """COMPLETED, with the run's best metric or None: a Failed job is a row in the sweep report, and an Optuna trial
    that fails (its value is not a number), rather than a FAILED return, which makes Hydra's sweepers raise before the
    report is written."""
    value = None
    if state is not None and state.status == "Completed" and RunDir(point.folder).metrics.is_file():
        metrics = RunDir(point.folder).read_metrics()
        value = (metrics.get("best") or {}).get(metrics.get("monitor"))
    ret = JobReturn(overrides=point.overrides, cfg=point.cfg, working_dir=str(point.folder), status=JobStatus.COMPLETED)
    ret.task_name = "launch"
    ret.return_value = value
    return ret


def print_plan(points: list[Point], max_parallel: int, dry_run: bool) -> None:
    """Every job's request, summarised: what they share once, then a row per job."""
    plan = points[0].plan
    print(
        ("DRY RUN: nothing is created. " if dry_run else "")
        + f"SageMaker sweep: {len(points)} training jobs, at most {max_parallel} in progress (sagemaker.max_parallel)"
    )
    print(f"every job: image {plan.image_uri}, role {plan.aws.role}, region {plan.aws.region}")
    print(f"  code: one source tarball under {plan.s3_root}/code/sweeps/; outputs: {plan.output_uri}/<job>/output/")
    print("| # | job (base name) | instance | spot | max_run / max_wait s | checkpoints | hyperparameters |")
    print("|---|---|---|---|---|---|---|")
    for p in points:
        i = p.plan.instance
        hps = " ".join(f"{k}={v}" if v else k for k, v in p.plan.hyperparameters.items())
        print(
            f"| {p.index} | {p.plan.base_job_name} | {i.instance_count} × {i.instance_type} | "
            f"{'yes' if i.spot else 'no'} | {i.max_run} / {i.max_wait or '-'} | {p.plan.checkpoint_uri} | {hps} |"
        )
