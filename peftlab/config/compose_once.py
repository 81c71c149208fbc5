"""Each config Hydra composes for a command is composed once.

A -m sweep's jobs. Hydra's sweepers check every job before the first one runs (Sweeper.validate_batch_is_legal
composes each job's config and drops it, so that a bad override in the last job fails before the first trains), then
the launcher composes each job again as it starts it: ConfigLoaderImpl.load_sweep_config twice per job, 0.11 s each
on 2 cores, so 0.66 s of a 6-job sweep went to compositions already made. Hydra 1.3 has no hook between the two, so
the loader's method is wrapped: the check's call keeps a copy of what it composed, and the next call with the same
inputs (the same master config, config name and overrides) takes that copy instead of composing. A job whose
overrides differ from an earlier job's only in plain values (`seed=0,1,2`, `peft.lr=...`: no group choice, so the
same files merged into the same tree) is not composed at all: Hydra's own override code sets those values in a copy
of the earlier job's config (0.016–0.03 s against 0.08 s a composition). A launcher that composes in another process
(joblib, submitit) composes there as before: the kept copies stay out of the loader's pickle, held beside it.

The command's own config. Hydra.get_mode composes it (in MULTIRUN mode, without checking sweep overrides) only to
read `hydra.mode`, then Hydra.multirun or Hydra.run composes it again from the same inputs, plus `hydra.mode=RUN` or
`hydra.mode=MULTIRUN` where the config sets no mode (hydra._internal.utils._run_app appends it). The probe's config
is kept as is (get_mode only reads it) and handed to that second composition after Hydra's check of the sweep
overrides for its mode, with the appended mode applied by Hydra's own override code and recorded among the hydra
overrides, as the composition would. The modes differ in one more thing: MULTIRUN skips a config group left
`???` (RUN refuses it, naming the group), which leaves `???` among the choices: then a RUN composition composes
itself, and refuses.
"""

import copy
import weakref
from typing import Any

from omegaconf import DictConfig, OmegaConf

KEPT: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()  # config loader -> configs it composed
MODE_OVERRIDES = (["hydra.mode=RUN"], ["hydra.mode=MULTIRUN"])  # what _run_app appends to the command's overrides


def compose_each_config_once() -> None:
    compose_each_sweep_job_once()
    compose_the_command_once()


def compose_each_sweep_job_once() -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    compose = ConfigLoaderImpl.load_sweep_config
    if getattr(compose, "kept_for_launch", False):
        return

    def load_sweep_config(self: Any, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        hydra = master_config.hydra
        inputs = (id(master_config), hydra.job.config_name, *OmegaConf.to_container(hydra.overrides.hydra))
        key = (inputs, tuple(sweep_overrides))
        kept = KEPT.setdefault(self, {})
        if key in kept:
            return kept.pop(key)
        config = _from_sibling(self, kept.get(("sibling", inputs)), sweep_overrides)
        if config is None:
            config = compose(self, master_config, sweep_overrides)
            kept[("sibling", inputs)] = (list(sweep_overrides), copy.deepcopy(config))
        else:
            OmegaConf.copy_cache(from_config=master_config, to_config=config)  # as Hydra's own load_sweep_config
        kept[key] = copy.deepcopy(config)
        return config

    load_sweep_config.kept_for_launch = True
    ConfigLoaderImpl.load_sweep_config = load_sweep_config


def compose_the_command_once() -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    compose = ConfigLoaderImpl.load_configuration
    if getattr(compose, "keeps_mode_probe", False):
        return

    def load_configuration(
        self: Any,
        config_name: str | None,
        overrides: list[str],
        run_mode: Any,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        kept = KEPT.setdefault(self, {})
        if not validate_sweep_overrides:
            config = compose(self, config_name, overrides, run_mode, from_shell, validate_sweep_overrides)
            if run_mode == RunMode.MULTIRUN:  # Hydra.get_mode: it reads hydra.mode and drops the config
                kept[("mode probe", config_name, tuple(overrides), from_shell)] = config
            return config
        probe, appended = _take_probe(kept, config_name, overrides, from_shell)
        if probe is None or not _same_in(run_mode, probe, RunMode):
            return compose(self, config_name, overrides, run_mode, from_shell, validate_sweep_overrides)
        parsed = OverridesParser.create().parse_overrides(overrides=overrides)
        self.validate_sweep_overrides_legal(overrides=parsed, run_mode=run_mode, from_shell=from_shell)
        mode = parsed[len(parsed) - len(appended) :]  # a hydra key, applied last as in a composition
        self._apply_overrides_to_config(mode, probe)
        probe.hydra.overrides.hydra.extend([o.input_line for o in mode])
        return probe

    load_configuration.keeps_mode_probe = True
    ConfigLoaderImpl.load_configuration = load_configuration


def _take_probe(kept: dict, config_name: str | None, overrides: list[str], from_shell: bool) -> tuple[Any, list]:
    """The probe composed from these overrides, or from them less the mode _run_app appended (and that mode)."""
    candidates = [(overrides, [])]
    if overrides[-1:] in MODE_OVERRIDES:
        candidates.append((overrides[:-1], overrides[-1:]))
    for inputs, appended in candidates:
        probe = kept.pop(("mode probe", config_name, tuple(inputs), from_shell), None)
        if probe is not None:
            return probe, appended
    return None, []


def _same_in(run_mode: Any, probe: DictConfig, modes: Any) -> bool:
    """Whether composing in run_mode gives the MULTIRUN probe's config: always in MULTIRUN; in RUN unless the probe
    skipped a config group left `???` (RUN refuses it)."""
    return run_mode == modes.MULTIRUN or "???" not in OmegaConf.to_container(probe.hydra.runtime.choices).values()


def _from_sibling(loader: Any, sibling: tuple | None, overrides: list[str]) -> DictConfig | None:
    """This job's config from a sibling's (a job of the same sweep composed before), where the two differ only in
    values: the same overrides but for plain `key=value` ones of keys that are no config group, each given once, to a
    scalar. Such overrides change no defaults list, so the composition would merge the same files into the same tree
    and then set those keys: Hydra's own override code sets them in a copy of the sibling's config instead, and its
    record of the job's overrides follows. None: compose."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if sibling is None or len(sibling[0]) != len(overrides):
        return None
    parser = OverridesParser.create()
    theirs, mine = parser.parse_overrides(overrides=sibling[0]), parser.parse_overrides(overrides=overrides)
    keys, changed = [o.key_or_group for o in mine], []
    for old, new in zip(theirs, mine, strict=True):
        if old.input_line == new.input_line:
            continue
        if old.key_or_group != new.key_or_group or keys.count(new.key_or_group) > 1:
            return None
        if not (_plain_value(loader, old) and _plain_value(loader, new)):
            return None
        changed.append(new)
    config = copy.deepcopy(sibling[1])
    loader._apply_overrides_to_config(changed, config)
    task = [o for o in mine if not o.is_hydra_override()]
    job = config.hydra.job
    config.hydra.overrides.task = [o.input_line for o in task]
    job.override_dirname = get_overrides_dirname(
        overrides=task,
        kv_sep=job.config.override_dirname.kv_sep,
        item_sep=job.config.override_dirname.item_sep,
        exclude_keys=job.config.override_dirname.exclude_keys,
    )
    return config


def _plain_value(loader: Any, override: Any) -> bool:
    """`key=value` setting one scalar: not a config group's choice (as Hydra's Overrides tells them apart), not an
    addition or deletion, no package, not a Hydra setting, not a sweep."""
    from hydra.core.override_parser.types import OverrideType

    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_hydra_override()
        and not override.is_sweep_override()
        and not isinstance(override.value(), (dict, list))
        and not loader.repository.group_exists(override.key_or_group)
    )
