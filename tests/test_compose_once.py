"""config/compose_once.py: a sweep job's config is composed once for the sweeper's check and the launcher together,
and a command's own config once for Hydra's mode check and the run or sweep."""

import sys

import pytest
from hydra import initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

import peftlab.cli  # noqa: F401  (installs the wrapper, as every command does)
from peftlab.config.compose_once import KEPT


def count_compositions(monkeypatch) -> list:
    """The overrides of each composition Hydra really makes from here on (its loader's own method, under ours)."""
    compositions = []
    compose = ConfigLoaderImpl._load_configuration_impl

    def counted(self, *args, **kwargs):
        compositions.append(kwargs.get("overrides"))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl", counted)
    return compositions


@pytest.fixture
def loader_and_master(monkeypatch):
    with initialize_config_module(config_module="peftlab.conf", version_base=None):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=["seed=0,1"], run_mode=RunMode.MULTIRUN)
        yield loader, master, count_compositions(monkeypatch)


def test_the_launch_takes_what_the_check_composed(loader_and_master):
    loader, master, compositions = loader_and_master
    checked = [loader.load_sweep_config(master, [f"peft={m}"]) for m in ("lora", "ia3")]  # validate_batch_is_legal
    assert len(compositions) == 2
    launched = loader.load_sweep_config(master, ["peft=ia3"])  # the launcher, for job 1
    assert len(compositions) == 2, "no second composition"
    assert launched is not checked[1] and launched.peft.method == "ia3"
    assert OmegaConf.to_yaml(launched) == OmegaConf.to_yaml(checked[1])
    with open_dict(launched):  # what BasicLauncher does to its job's config
        launched.hydra.job.id = 1
    assert OmegaConf.is_missing(checked[1].hydra.job, "id"), "the launcher's config is its own"
    again = loader.load_sweep_config(master, ["peft=ia3"])
    assert again is not launched and again.hydra.job.get("id") is None, "a kept config is taken once"
    assert OmegaConf.to_yaml(again) == OmegaConf.to_yaml(checked[1])


def test_other_inputs_are_composed(loader_and_master):
    loader, master, compositions = loader_and_master
    loader.load_sweep_config(master, ["seed=0"])
    other = loader.load_sweep_config(master, ["seed=0", "peft.r=4"])
    assert len(compositions) == 2 and other.peft.r == 4


def node_record(node, path: str = "") -> dict:
    """Every node of a config by its path: class, declared types, flags, value: what a composition decides."""
    meta = node._metadata
    record = {path: (type(node).__name__, meta.ref_type, meta.object_type, dict(meta.flags or {}))}
    if OmegaConf.is_config(node) and not (node._is_none() or node._is_missing()):
        for key in node.keys() if OmegaConf.is_dict(node) else range(len(node)):
            record.update(node_record(node._get_node(key), f"{path}.{key}"))
    else:
        record[path] += (repr(node._value()),)
    return record


VALUE_SWEEPS = [  # (the job composed first, the job that differs from it in values only)
    (["seed=0"], ["seed=1"]),
    (["peft=lora", "seed=0", "peft.r=4"], ["peft=lora", "seed=0", "peft.r=16"]),
    (["dataset=sst2", "dataset.max_train_rows=100"], ["dataset=sst2", "dataset.max_train_rows=null"]),
    (["dataset=sst2", "dataset.max_train_rows=null"], ["dataset=sst2", "dataset.max_train_rows=7"]),
    (["peft.lr=1e-3", "model.name_or_path=a/b"], ["peft.lr=0.01", "model.name_or_path=c/d"]),
    (["optim.optimizer.lr=0.1"], ["optim.optimizer.lr=${peft.lr}"]),
]


@pytest.mark.parametrize(("first", "job"), VALUE_SWEEPS)
def test_a_job_that_differs_in_values_is_its_sibling_s_config_with_them_set(first, job, loader_and_master):
    """Node for node (types, flags, values) and Hydra's record of the job what a composition of its own makes."""
    loader, master, compositions = loader_and_master
    loader.load_sweep_config(master, first)
    derived = loader.load_sweep_config(master, job)
    assert len(compositions) == 1, "set in a copy, not composed"
    KEPT.clear()
    composed = loader.load_sweep_config(master, job)
    assert len(compositions) == 2
    assert node_record(derived) == node_record(composed)
    assert OmegaConf.to_container(derived.hydra.overrides.task) == job
    assert derived.hydra.job.override_dirname == composed.hydra.job.override_dirname


@pytest.mark.parametrize(
    ("first", "job"),
    [
        (["peft=lora", "seed=0"], ["peft=ia3", "seed=0"]),
        (["peft=lora", "+extra=0"], ["peft=lora", "+extra=1"]),
        (["seed=0", "seed=1"], ["seed=0", "seed=2"]),
        (["peft=lora", "seed=0"], ["peft=lora", "seed=[1]"]),
    ],
)
def test_a_job_that_differs_otherwise_is_composed(first, job, loader_and_master):
    """Another group choice, an addition, a key given twice, a list value: the composition decides."""
    loader, master, compositions = loader_and_master
    loader.load_sweep_config(master, first)
    loader.load_sweep_config(master, job)
    assert len(compositions) == 2


def test_a_bad_value_is_refused_as_a_composition_refuses_it(loader_and_master):
    from hydra.errors import ConfigCompositionException

    loader, master, compositions = loader_and_master
    loader.load_sweep_config(master, ["dataset.max_train_rows=5"])
    with pytest.raises(ConfigCompositionException, match=r"Error merging override dataset\.max_train_rows=abc"):
        loader.load_sweep_config(master, ["dataset.max_train_rows=abc"])
    assert len(compositions) == 1


@pytest.fixture
def counted_loader(monkeypatch):
    compositions = count_compositions(monkeypatch)
    with initialize_config_module(config_module="peftlab.conf", version_base=None):
        yield GlobalHydra.instance().config_loader(), compositions


def probe(loader, overrides):
    """What Hydra.get_mode asks for, before Hydra.multirun or Hydra.run composes."""
    kwargs = {"config_name": "config", "overrides": overrides, "from_shell": True}
    return loader.load_configuration(**kwargs, run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False)


def test_the_sweep_takes_the_mode_probe_s_config(counted_loader):
    loader, compositions = counted_loader
    probed = probe(loader, ["seed=0,1", "peft.r=4"])
    swept = loader.load_configuration("config", overrides=["seed=0,1", "peft.r=4"], run_mode=RunMode.MULTIRUN)
    assert len(compositions) == 1 and swept is probed and swept.peft.r == 4
    again = loader.load_configuration("config", overrides=["seed=0,1", "peft.r=4"], run_mode=RunMode.MULTIRUN)
    assert len(compositions) == 2 and OmegaConf.to_yaml(again) == OmegaConf.to_yaml(swept), "taken once"


def test_a_single_run_takes_the_probe_s_config_as_its_own_composition_would_be(counted_loader):
    loader, compositions = counted_loader
    single = ["peft.r=8", "dataset=sst2"]
    fresh = loader.load_configuration("config", overrides=single, run_mode=RunMode.RUN)
    probed = probe(loader, single)
    run = loader.load_configuration("config", overrides=single, run_mode=RunMode.RUN)
    assert len(compositions) == 2 and run is probed, "no composition of its own"
    assert OmegaConf.to_yaml(run) == OmegaConf.to_yaml(fresh)


def test_the_modes_own_refusals_still_come(counted_loader):
    from hydra.errors import ConfigCompositionException

    loader, compositions = counted_loader
    overrides = ["hydra.job.chdir=true,false"]
    probe(loader, overrides)  # get_mode composes without the check (and reads hydra.mode)
    with pytest.raises(ConfigCompositionException, match="Sweeping over Hydra's configuration is not supported"):
        loader.load_configuration("config", overrides=overrides, run_mode=RunMode.MULTIRUN)
    assert len(compositions) == 1, "refused by the check, on the probe's config"
    probe(loader, ["seed=0,1"])  # a sweep's value without -m
    with pytest.raises(ConfigCompositionException, match="Ambiguous value for argument 'seed=0,1'"):
        loader.load_configuration("config", overrides=["seed=0,1"], run_mode=RunMode.RUN)


def test_a_group_left_missing_is_refused_in_a_run(tmp_path, monkeypatch):
    """MULTIRUN skips a group whose default is `???`; a run must name it, so it composes itself and refuses."""
    from hydra.errors import ConfigCompositionException

    package = tmp_path / "missing_conf"
    (package / "grp").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config.yaml").write_text("defaults:\n  - grp: ???\n  - _self_\nx: 1\n")
    (package / "grp" / "a.yaml").write_text("y: 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with initialize_config_module(config_module="missing_conf", version_base=None):
        loader = GlobalHydra.instance().config_loader()
        probed = loader.load_configuration("config", [], run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False)
        assert probed.x == 1 and OmegaConf.is_missing(probed.hydra.runtime.choices, "grp")
        with pytest.raises(ConfigCompositionException, match="You must specify 'grp'"):
            loader.load_configuration("config", [], run_mode=RunMode.RUN)
    sys.modules.pop("missing_conf", None)


@pytest.mark.parametrize("multirun", [False, True])
def test_a_command_composes_its_config_once(multirun, tmp_path, monkeypatch):
    """Through Hydra's own entry (hydra.main): the mode check, then the run or the sweep and its two jobs."""
    import hydra

    from peftlab.conf import CONFIG_PATH

    compositions, configs = count_compositions(monkeypatch), []
    where = f"hydra.sweep.dir={tmp_path}" if multirun else f"hydra.run.dir={tmp_path}"
    argv = ["-m", "seed=0,1"] if multirun else ["seed=3"]
    monkeypatch.setattr(sys, "argv", ["train.py", *argv, "peft.r=4", where])
    hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(configs.append)()
    # the mode check's composition serves the command; the second job differs in a value from the first
    assert len(compositions) == (2 if multirun else 1)
    assert [c.seed for c in configs] == ([0, 1] if multirun else [3]) and all(c.peft.r == 4 for c in configs)
    mode = "MULTIRUN" if multirun else "RUN"
    asked = [*argv[1:], "peft.r=4", where] if multirun else [*argv, "peft.r=4", where]
    with initialize_config_module(config_module="peftlab.conf", version_base=None):
        loader = GlobalHydra.instance().config_loader()
        fresh = loader.load_configuration("config", [*asked, f"hydra.mode={mode}"], run_mode=RunMode[mode])
    task_keys = [key for key in fresh if key != "hydra"]
    record = OmegaConf.load(tmp_path / ("multirun.yaml" if multirun else ".hydra/hydra.yaml"))
    assert record.hydra.mode == mode and record.hydra.overrides.hydra == fresh.hydra.overrides.hydra
    if multirun:  # the sweep's config, as a composition of its own gives it
        assert OmegaConf.masked_copy(record, task_keys) == OmegaConf.masked_copy(fresh, task_keys)
    else:
        assert OmegaConf.load(tmp_path / ".hydra/config.yaml") == OmegaConf.masked_copy(fresh, task_keys)
