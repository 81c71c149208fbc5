"""Bad inputs through `python train.py`: each stops with its one named `error:` line, exit code 2, no traceback."""

import importlib.util
import subprocess
import sys

import pytest
import torch
from conftest import compose_config, run_cli
from test_cli import _error_line

from peftlab.config import validate
from peftlab.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["hardware=ddp", "hardware.devices=0"], "hardware.devices=0: an integer >= 1 or auto"),
        (["hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=[0,1]"], "hardware.devices=[0, 1]: an integer"),
        (["hardware=ddp", "hardware.devices=-1"], None),  # all GPUs: allowed where the accelerator is a GPU
        (["hardware=ddp", "hardware.devices=[0,1]"], None),
        (["hardware.strategy=horovod"], "hardware.strategy='horovod': allowed values are auto, ddp,"),
        (["hardware=ddp", "hardware.num_nodes=0"], "hardware.num_nodes=0: must be >= 1"),
        (["hardware=fsdp", "hardware.accelerator=cpu"], "hardware.strategy='fsdp': runs on GPUs only"),
        (["hardware=fsdp"], None),  # sharded; adapter/ is gathered from the shards (run/gather.py)
        (["hardware=fsdp", "peft=prefix"], "peft=prefix with hardware.strategy=fsdp: not supported (peft saves prompt"),
        (["hardware=fsdp", "peft=qlora"], "peft=qlora with hardware.strategy=fsdp: not supported (a 4-bit base"),
        (
            ["hardware=deepspeed", "hardware.strategy=deepspeed_stage_3_offload"],
            "hardware.strategy=deepspeed_stage_3_offload: not supported yet (ZeRO stage 3",
        ),
        (["hardware=deepspeed"], None),  # ZeRO stage 2: the weights stay whole on every rank
    ],
)
def test_hardware_values_are_checked(overrides, expected, tmp_path):
    cfg = compose_config(overrides, output_dir=tmp_path)
    if expected is None:
        assert validate(cfg).hardware.strategy == cfg.hardware.strategy
        return
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trainer.max_epochs=abc"], "error: trainer.max_epochs: Value 'abc' of type 'str' could not be converted"),
        (["hardware=ddp", "hardware.devices=0"], "error: hardware.devices=0: an integer >= 1 or auto"),
        # a wrong type in a group with a schema: refused while Hydra composes, the same one line
        (["dataset.batch_size=abc"], "error: dataset.batch_size: Value 'abc' of type 'str' could not be converted"),
        (["hardware.num_nodes=x"], "error: hardware.num_nodes: Value 'x' of type 'str' could not be converted"),
    ],
)
def test_bad_values_on_the_command_line(args, expected, tmp_path):
    proc = run_cli(*args, f"hydra.run.dir={tmp_path}")
    assert _error_line(proc).startswith(expected)
    assert not (tmp_path / "config.yaml").exists()  # stopped by validation, before any stage ran


def test_missing_deepspeed_is_reported_before_the_model_is_read(tmp_path):
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    proc = run_cli("hardware=deepspeed", "model.name_or_path=no-such-model-folder", f"hydra.run.dir={tmp_path}")
    # Lightning's own DeepSpeedStrategy says what is missing; not "cannot load 'no-such-model-folder'"
    assert _error_line(proc).startswith(
        "error: hardware.strategy='deepspeed_stage_2': To use the `DeepSpeedStrategy`, you must have DeepSpeed "
        "installed. Install it by running `pip install -U deepspeed`."
    )


def test_processes_per_node_is_lightnings_count(monkeypatch):
    """One process per device Lightning's accelerator parses on this machine; GPUs it lacks are named in one line."""
    import lightning_fabric.accelerators.cuda as cuda

    from peftlab.run.distributed import processes_per_node
    from peftlab.trainer.hardware import parallel_devices

    assert [processes_per_node("cpu", d) for d in (1, 3, "auto")] == [1, 3, 1]
    monkeypatch.setattr(cuda, "num_cuda_devices", lambda: 2)
    assert [len(parallel_devices("cuda", d)) for d in (1, 2, -1, "auto", [1])] == [1, 2, 2, 2, 1]
    with pytest.raises(ConfigError, match=r"^hardware.devices=\[0, 3\]: You requested gpu: \[0, 3\] But your machine"):
        parallel_devices("cuda", [0, 3])


def test_invalid_json_names_the_line(write_jsonl, tmp_path):
    folder = write_jsonl([{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0}])
    lines = (folder / "train.jsonl").read_text().splitlines()
    (folder / "train.jsonl").write_text("\n".join([*lines, '{"sentence": "oops" "label": 0}', lines[0]]) + "\n")
    proc = run_cli("dataset=sst2", f"dataset.data_dir={folder}", f"hydra.run.dir={tmp_path / 'run'}")
    assert _error_line(proc) == (
        f"error: {folder / 'train.jsonl'}: line 3: invalid JSON (Expecting ',' delimiter at column 21)"
    )


def test_string_label_outside_the_label_map(write_jsonl, tmp_path):
    rows = [{"sentence": "good", "label": "positive"}, {"sentence": "dull", "label": "meh"}]
    folder = write_jsonl(rows)
    proc = run_cli("dataset=sst2", f"dataset.data_dir={folder}", f"hydra.run.dir={tmp_path / 'run'}")
    assert _error_line(proc) == (
        f"error: {folder / 'train.jsonl'}: row 1, line 2: label 'meh' is not in the label set "
        "['negative', 'positive'] (ids 0..1 or these names)"
    )


# Run as `python -c`: the training command with torch, transformers, peft and Lightning refused by an import hook.
WITHOUT_HEAVY_IMPORTS = """
import importlib.abc, importlib.machinery, sys
class Refuse(importlib.abc.Loader):  # found (datasets asks find_spec whether torch exists), but never loaded
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "peft", "pytorch_lightning"):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ImportError(f"{spec.name}: refused by the test")
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Refuse())
from peftlab.train import main
main()
"""


def test_a_bad_row_is_named_before_peft_torch_or_lightning_load(write_jsonl, tmp_path):
    """run.train checks the data files between our config checks and peft's (importing peft imports torch): with
    torch, transformers, peft and Lightning unimportable, the LoRA run still names the bad row, in one line."""
    folder = write_jsonl([{"sentence": "good", "label": "positive"}, {"sentence": "dull", "label": "meh"}])
    args = ["peft=lora", "dataset=sst2", f"dataset.data_dir={folder}", f"hydra.run.dir={tmp_path / 'run'}"]
    command = [sys.executable, "-c", WITHOUT_HEAVY_IMPORTS, *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert _error_line(proc) == (
        f"error: {folder / 'train.jsonl'}: row 1, line 2: label 'meh' is not in the label set "
        "['negative', 'positive'] (ids 0..1 or these names)"
    )


def test_empty_validation_split(write_jsonl, tmp_path):
    folder = write_jsonl([{"sentence": "good", "label": 1}], validation=[])
    proc = run_cli("dataset=sst2", f"dataset.data_dir={folder}", f"hydra.run.dir={tmp_path / 'run'}")
    assert _error_line(proc) == f"error: {folder / 'validation.jsonl'}: the split is empty"


def test_max_length_over_the_model_maximum(tmp_path):
    proc = run_cli("model=gpt2_tiny", "dataset.max_length=300", "dataset.max_train_rows=8", f"hydra.run.dir={tmp_path}")
    assert _error_line(proc) == (
        "error: dataset.max_length=300: longer than model=gpt2_tiny takes (256 positions); set dataset.max_length<=256"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_hardware_without_a_gpu_suggests_cpu(tmp_path):
    proc = run_cli("hardware=gpu", f"hydra.run.dir={tmp_path}")
    assert _error_line(proc) == "error: hardware=gpu: no CUDA device is visible on this machine; use hardware=cpu"
