"""bench/gpu_check.py --cpu-smoke: every code path of the GPU check runs on CPU with tiny sizes, so it cannot rot
between the rare sessions that get a GPU (issue 28). The GPU run itself: tests/test_gpu.py, or the script there."""

import re
import sys

import forked_commands
from conftest import REPO, shared_split_dir

CHECKS = {"lora_bf16", "qlora", "generation_serve", "fsdp", "resume", "throughput_sst2", "throughput_sql"}


def test_cpu_smoke_passes_every_check_and_prints_one_table(tmp_path):
    data = shared_split_dir("sst2").parent
    shared_split_dir("text2sql_wikisql")
    script = REPO / "bench" / "gpu_check.py"
    command = [sys.executable, str(script), "--cpu-smoke", f"--data={data}", f"--work={tmp_path}"]
    proc = forked_commands.run(command, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("| check | result | seconds | figure |") :]
    results = dict(re.findall(r"^\| (\w+) \| (pass|FAIL|skip) \| [\d.]+ \|", table, flags=re.M))
    assert set(results) == CHECKS
    skipped = {"fsdp"} | (set() if sys.version_info >= (3, 11) else {"throughput_sql"})  # trl: Python >= 3.11
    assert {name for name, result in results.items() if result == "skip"} == skipped
    assert "| fsdp | skip | 0.0 | Lightning's FSDP needs CUDA" in table  # its gather: tests/test_sharded_gather.py
    # On CPU (fp32) the killed-and-resumed run ends with exactly the uninterrupted run's weights.
    assert re.search(
        r"== resume: pass in [\d.]+ s: killed at step \d+, resumed from \d+, 12 steps; .* 0$", proc.stdout, re.M
    )
    assert re.search(r"== throughput_sst2: pass .*: b8: [\d.]+ samples/s, [\d.]+× HF", proc.stdout)


def test_the_gpu_modes_runs_compose_and_validate(tmp_path):
    """What the GPU mode runs (real shapes, SmolLM2's carried tokenizer, hardware=gpu/fsdp) composes and passes our
    validation here, so a config change cannot break the check that runs only on a lent GPU."""
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check

    from peftlab.config import validate

    data = shared_split_dir("sst2").parent
    shared_split_dir("text2sql_wikisql")
    ctx = gpu_check.Context(gpu_check.GPU, data, tmp_path / "tokenizer", tmp_path)
    runs = {"gpu": [[*ctx.gpt2, *ctx.sst2(), "peft=lora"], [*ctx.gpt2, *ctx.sst2(), "peft=qlora"],
                    [*ctx.smollm2, *ctx.sql(), "peft=lora"]],
            "fsdp": [[*ctx.gpt2, *ctx.sst2(), "peft=lora"]]}  # fmt: skip
    for hardware, overrides in runs.items():
        for run in overrides:
            settings = validate(ctx.compose("run", run, hardware), check_with_peft=False)
            assert settings.hardware.accelerator == "gpu" and settings.hardware.name == hardware
    smollm2 = validate(ctx.compose("run", [*ctx.smollm2, *ctx.sql()]), check_with_peft=False).model
    assert smollm2.config_overrides["num_hidden_layers"] == 30 and smollm2.config_overrides["rope_theta"] == 100000
    assert smollm2.twin_tokenizer == {
        "_target_": "peftlab.offline.twin_tokenizers.saved",
        "path": str(tmp_path / "tokenizer"),
    }
