"""config/parsed_files.py: each config file is parsed once per process, and no two compositions share a node."""

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import peftlab.cli  # installs the wrapper, as every command does
from peftlab.config import parsed_files

CONF = Path(peftlab.cli.__file__).parent / "conf"


@pytest.fixture
def parses(monkeypatch):
    """How many files Hydra's pkg:// source really parsed (it calls OmegaConf.load once a file)."""
    monkeypatch.setattr(parsed_files, "PARSED", {})
    counted = []
    load = OmegaConf.load

    def counting(file):
        counted.append(file)
        return load(file)

    monkeypatch.setattr(OmegaConf, "load", counting)
    return counted


def test_compositions_share_parsing_not_nodes(parses):
    with initialize_config_module(config_module="peftlab.conf", version_base=None):
        first = compose("config", overrides=["peft.r=4", "dataset=sst2"])
        parsed = len(parses)
        other = compose("config", overrides=["peft.r=16", "model=smollm2"])
        new = [Path(f.name).relative_to(CONF).as_posix() for f in parses[parsed:]]
        assert new == ["dataset/demo.yaml", "model/smollm2.yaml"], "only the options the first did not use"
        again = compose("config", overrides=["peft.r=4", "dataset=sst2"])
    assert parsed > 10 and len(parses) == parsed + 2
    assert other.peft.r == 16 and again.peft.r == 4 and other.model.name == "smollm2"
    assert OmegaConf.to_yaml(again) == OmegaConf.to_yaml(first), "the later compositions start from clean copies"


def test_an_edited_file_is_read_again(parses, tmp_path, monkeypatch):
    package = tmp_path / "edited_conf"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "config.yaml").write_text("lr: 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with initialize_config_module(config_module="edited_conf", version_base=None):
        assert compose("config").lr == 0.1
        (package / "config.yaml").write_text("lr: 0.25\nsteps: 3\n")  # another size: another version
        edited = compose("config")
    assert edited.lr == 0.25 and edited.steps == 3
    assert [f.name for f in parses if "edited_conf" in f.name] == [str(package / "config.yaml")] * 2
    sys.modules.pop("edited_conf", None)
