"""config/sweep_jobs.py: a sweep job's config is composed once for the sweeper's check and the launcher together."""

import pytest
from hydra import initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

import peftlab.cli  # noqa: F401  (installs the wrapper, as every command does)


@pytest.fixture
def loader_and_master(monkeypatch):
    compositions = []
    compose = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        compositions.append(kwargs.get("overrides"))
        return compose(self, *args, **kwargs)

    with initialize_config_module(config_module="peftlab.conf", version_base=None):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=["seed=0,1"], run_mode=RunMode.MULTIRUN)
        monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
        yield loader, master, compositions


def test_the_launch_takes_what_the_check_composed(loader_and_master):
    loader, master, compositions = loader_and_master
    checked = [loader.load_sweep_config(master, [f"seed={s}"]) for s in (0, 1)]  # Sweeper.validate_batch_is_legal
    assert len(compositions) == 2
    launched = loader.load_sweep_config(master, ["seed=1"])  # the launcher, for job 1
    assert len(compositions) == 2, "no second composition"
    assert launched is not checked[1] and launched.seed == 1
    assert OmegaConf.to_yaml(launched) == OmegaConf.to_yaml(checked[1])
    with open_dict(launched):  # what BasicLauncher does to its job's config
        launched.hydra.job.id = 1
    assert OmegaConf.is_missing(checked[1].hydra.job, "id"), "the launcher's config is its own"
    again = loader.load_sweep_config(master, ["seed=1"])
    assert len(compositions) == 3 and again.seed == 1, "a kept config is taken once; later calls compose"


def test_other_inputs_are_composed(loader_and_master):
    loader, master, compositions = loader_and_master
    loader.load_sweep_config(master, ["seed=0"])
    other = loader.load_sweep_config(master, ["seed=0", "peft.r=4"])
    assert len(compositions) == 2 and other.peft.r == 4


@pytest.fixture
def counted_loader(monkeypatch):
    compositions = []
    compose = ConfigLoaderImpl._load_configuration_impl

    def counted(self, *args, **kwargs):
        compositions.append(kwargs.get("overrides"))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl", counted)
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
    single = ["peft.r=8"]
    probe(loader, single)
    run = loader.load_configuration("config", overrides=single, run_mode=RunMode.RUN)
    assert len(compositions) == 4 and run.hydra.overrides.task == single, "a single run composes in its own mode"


def test_a_sweep_over_hydra_keys_is_still_refused(counted_loader):
    from hydra.errors import ConfigCompositionException

    loader, compositions = counted_loader
    overrides = ["hydra.job.chdir=true,false"]
    probe(loader, overrides)  # get_mode composes without the check (and reads hydra.mode)
    with pytest.raises(ConfigCompositionException, match="Sweeping over Hydra's configuration is not supported"):
        loader.load_configuration("config", overrides=overrides, run_mode=RunMode.MULTIRUN)
    assert len(compositions) == 1, "refused by the check, on the probe's config"
