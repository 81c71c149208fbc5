"""GPU paths (issue 17): where a 4-bit base lands, the precision picked, per-rank memory, DDP over GPUs.

Skipped without CUDA (CI has none); on a lent GPU: `pytest tests/test_gpu.py`.
"""

import json

import pytest
import torch
from conftest import compose_config
from test_distributed import DDP, TINY, train_cli

from peftlab.config import validate
from peftlab.run.training import fit
from peftlab.trainer.hardware import resolve_precision

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
GPU_TINY = ["model=gpt2_tiny", "hardware=gpu", "trainer.max_steps=4", "dataset.max_train_rows=64",
            "dataset.max_eval_rows=32", "trainer.val_check_interval=2"]  # fmt: skip


def test_qlora_base_is_quantised_onto_the_gpu_in_bfloat16_compute(tmp_path):
    result = fit(compose_config([*GPU_TINY, "peft=qlora"], output_dir=tmp_path))
    quantised = [m for m in result.module.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantised and all(m.weight.device.type == "cuda" for m in quantised)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    assert {m.compute_dtype for m in quantised} == {expected}
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["peak_memory_per_rank"][0]["cuda_mb"] > 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_precision_auto_on_this_gpu(tmp_path):
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    for model, fp16_fallback in (("gpt2_tiny", "16-mixed"), ("t5_tiny", "32-true")):
        settings = validate(compose_config([f"model={model}", "hardware=gpu"], output_dir=tmp_path))
        assert resolve_precision(settings.hardware, settings.model) == ("bf16-mixed" if bf16 else fp16_fallback)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_qlora_under_ddp_puts_each_ranks_base_on_its_own_gpu(tmp_path):
    gpus = [a for a in DDP if not a.startswith("hardware.accelerator")] + ["hardware.accelerator=gpu"]
    proc = train_cli(*gpus, *TINY, "peft=qlora", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    per_rank = json.loads((tmp_path / "metrics.json").read_text())["peak_memory_per_rank"]
    assert [r["rank"] for r in per_rank] == [0, 1] and all(r["cuda_mb"] > 0 for r in per_rank)
    # Each process's peak is on its own device: a base quantised onto GPU 0 by rank 1 would leave cuda:1 nearly empty.
    assert per_rank[1]["cuda_mb"] > 0.5 * per_rank[0]["cuda_mb"]
