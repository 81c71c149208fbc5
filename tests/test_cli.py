"""`python train.py ...` as a user runs it: bad overrides and bad data give one named line and exit != 0."""

import json
import subprocess
import sys
import time

import forked_commands
import pytest
from conftest import option_names, run_cli


def _error_line(proc) -> str:
    """The one `error:` line (progress bars of `datasets` may precede it), and no traceback."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().endswith(errors[0])
    return errors[0]


# ModelSettings' fields, as an unknown model key's error lists them
MODEL_KEYS = (
    "activation_checkpointing, architecture, config_overrides, dtype, float16, gguf, head_modules, init, model_type, "
    "name, name_or_path, pad_token, peft_defaults, tokenizer, twin_tokenizer"
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["peft.r=0"], "error: peft.r=0: LoRA rank must be an integer >= 1"),
        (
            ["trainer.max_epochs=-1"],
            "error: trainer.max_epochs=-1: must be >= 1 (for step-based runs set trainer.max_steps too)",
        ),
        (
            ["dataset=sst2", "dataset.data_dir=/no/such/folder"],
            "error: dataset.data_dir='/no/such/folder': folder does not exist",
        ),
        # Refused by Hydra while it composes (the model group's schema), or by validate() for a `+` key: one line too
        (["model.nme=x"], f"error: model.nme: unknown key; allowed keys are {MODEL_KEYS}"),
        (["+model.foo=1"], f"error: model.foo: unknown key; allowed keys are {MODEL_KEYS}"),
    ],
)
def test_bad_override_one_line(args, expected, tmp_path):
    proc = run_cli(*args, f"hydra.run.dir={tmp_path}")
    assert _error_line(proc) == expected


def test_unknown_group_option_lists_the_allowed_ones(tmp_path):
    proc = run_cli("model=nope", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "Could not find 'model/nope'" in proc.stderr
    assert "Available options in 'model'" in proc.stderr and "minilm" in proc.stderr


def test_bad_label_in_file_names_file_and_row(write_jsonl, tmp_path):
    rows = [{"sentence": "fine", "label": 1}, {"sentence": "bad", "label": 0}, {"sentence": "odd", "label": 7}]
    folder = write_jsonl(rows)
    proc = run_cli("dataset=sst2", f"dataset.data_dir={folder}", f"hydra.run.dir={tmp_path / 'run'}")
    line = _error_line(proc)
    assert f"{folder / 'train.jsonl'}: row 2, line 3: label 7 is not in the label set" in line


def test_cfg_job_prints_composed_config(tmp_path):
    proc = run_cli("--cfg", "job", "peft.r=16")
    assert proc.returncode == 0
    assert "r: 16" in proc.stdout and "_target_: pytorch_lightning.Trainer" in proc.stdout


def test_help_lists_groups():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for group in ("model:", "peft:", "dataset:", "hardware:", "trainer:", "logger:", "callbacks:"):
        assert group in proc.stdout
    assert "peft: " + ", ".join(option_names("peft")) in proc.stdout  # every conf/peft/*.yaml


def test_default_run_end_to_end_with_overrides(tmp_path):
    """The user's default command, shrunk: real CLI, real Hydra run dir, metrics.json + adapter/."""
    run_dir = tmp_path / "run"
    started = time.time()
    proc = run_cli(
        "trainer.max_epochs=1",
        "dataset.max_train_rows=256",
        "dataset.max_eval_rows=128",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "seed=1",
        "peft.r=4",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == "lora" and metrics["seed"] == 1
    # process start to the first step: within the command's own wall time, and before its fit ended
    assert 0 < metrics["startup_s"] < time.time() - started - metrics["fit_time_s"] + 1
    assert "start-up (to first step)" in proc.stdout
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert "peft.r=4" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "peftlab run: minilm + lora on demo" in proc.stdout


def test_a_command_of_a_missing_extra_is_one_line(capsys):
    from peftlab.cli import require_extra

    require_extra("serve", "json")  # installed: nothing happens
    with pytest.raises(SystemExit) as exit_info:
        require_extra("serve", "fastapi", "no_such_module_of_peftlab")
    assert exit_info.value.code == 2
    said = capsys.readouterr().err.strip()
    assert said == (
        "error: needs the 'serve' extra (no_such_module_of_peftlab not installed): pip install 'peftlab[serve]'"
    )


def test_the_module_entry_is_train_py_from_any_folder(tmp_path):
    """`python -m peftlab.train` (what peftlab.compare and an installed package run) started outside the repository
    composes and documents the same config as `python train.py`: train.py is a shim over it."""
    import sys

    for args, expected in ((["--cfg", "job", "peft.r=16"], "r: 16"), (["--help"], "peft: ")):
        command = [sys.executable, "-m", "peftlab.train", *args]
        proc = forked_commands.run(command, cwd=tmp_path, timeout=300)
        script = run_cli(*args)
        assert proc.returncode == 0 and script.returncode == 0, proc.stderr[-2000:]
        assert expected in proc.stdout and proc.stdout == script.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written where it started


def test_every_command_composes_before_its_heavy_imports():
    """Each command's module, as `python -m` or its script imports it before Hydra parses the command line, imports
    neither torch nor transformers, datasets, scipy or Lightning: `--help` and a refused key answer in about a second
    (peftlab/lazy.py). One process, as a user's command starts: another test's imports must not hide one here."""
    commands = ["peftlab.train", "peftlab.run", "peftlab.cloud.launch"] + [
        f"peftlab.{name}.__main__" for name in ("export", "compare", "cost", "serve", "report")
    ]
    heavy = ("torch", "transformers", "datasets", "scipy", "pytorch_lightning")
    code = f"import sys, {', '.join(commands)}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
