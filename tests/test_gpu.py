"""GPU paths (issue 28), on random-weight models of real shapes (GPT-2-124M, SmolLM2-135M): the checks of
bench/gpu_check.py as tests, plus the precision choice and QLoRA under DDP on two GPUs.

Skipped without CUDA (CI has none). On a lent GPU: `pytest -m gpu tests/test_gpu.py` (or bench/gpu_check.py, which
also prints the throughput table). bench/gpu_pack.sh packs what a bare GPU machine lacks.
"""

import json
import sys

import pytest
import torch
from conftest import REPO, SHARED_DATA, compose_config
from test_distributed import DDP, TINY, train_cli

from peftlab.config import validate
from peftlab.trainer.hardware import resolve_precision

sys.path.insert(0, str(REPO / "bench"))
import gpu_check
import gpu_checks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    carried = REPO / ".device" / "data"
    return gpu_check.make_context(
        False, carried if carried.is_dir() else SHARED_DATA, work=tmp_path_factory.mktemp("gpu")
    )


@pytest.mark.parametrize(
    "check", [check for _, check in gpu_checks.CHECKS], ids=[name for name, _ in gpu_checks.CHECKS]
)
def test_gpu_path(check, ctx):
    """bf16-mixed LoRA, QLoRA on the CUDA kernels, generation + serving, FSDP, kill -9 + resume=auto."""
    try:
        print(check(ctx))
    except gpu_checks.Skip as reason:
        pytest.skip(str(reason))


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
