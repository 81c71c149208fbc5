"""adapter/ under a sharding strategy (FSDP): weights sharded across two processes are gathered to rank 0 and written
exactly as a one-process run writes them, for a peft adapter, our parallel adapter and a whole-model save.

Lightning's FSDP needs GPUs (tests/test_gpu.py runs it there); here FSDP2 shards the trained model across two CPU
processes on gloo (tests/sharded_gather_job.py) and the same gather (peftlab.run.gather) writes adapter/.
"""

import json
import os
import sys

import forked_commands
import pytest
from conftest import REPO, compose_config
from safetensors.torch import load_file

from peftlab.data.datamodule import even_batch_size
from peftlab.errors import DataError
from peftlab.run import fit

METHODS = ["lora", "adapters", "head_only"]
TINY = ["model=gpt2_tiny", "dataset.max_train_rows=32", "dataset.max_eval_rows=16", "dataset.batch_size=8",
        "trainer.max_epochs=1", "peft.lr=3e-2"]  # fmt: skip


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    """{method: (one-process run's adapter/, the adapter/ written from two processes' shards)}."""
    root = tmp_path_factory.mktemp("gather")
    pairs = {m: (root / m, root / f"{m}-gathered") for m in METHODS}
    for method, (run, _) in pairs.items():
        fit(compose_config([*TINY, f"peft={method}"], output_dir=run))
    job = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "tests" / "sharded_gather_job.py")]  # fmt: skip
    args = [str(path) for pair in pairs.values() for path in pair]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = forked_commands.run([*job, *args], cwd=REPO, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {method: (run / "adapter", out) for method, (run, out) in pairs.items()}


@pytest.mark.parametrize("method", METHODS)
def test_gathered_adapter_equals_the_one_process_adapter(method, gathered):
    single, out = gathered[method]
    weights = sorted(p.name for p in out.iterdir() if p.suffix == ".safetensors")
    assert weights, f"nothing written to {out}"
    for name in weights:
        expected, got = load_file(single / name), load_file(out / name)
        assert sorted(got) == sorted(expected), name
        for key, tensor in expected.items():
            assert got[key].dtype == tensor.dtype and got[key].equal(tensor), key
    for config in sorted(p.name for p in out.iterdir() if p.suffix == ".json"):
        assert _settings(out / config) == _settings(single / config), config


def _settings(path) -> dict:
    """A saved config; peft keeps target_modules as a set, so its order in JSON follows each process's hash seed."""
    config = json.loads(path.read_text())
    return {k: sorted(v) if k == "target_modules" and isinstance(v, list) else v for k, v in config.items()}


EVEN_BATCHES = [(41, 2, 8, 8), (42, 2, 7, 7), (33, 2, 8, 7), (5, 2, 2, 3), (3, 2, 1, 2), (9, 4, 2, 3)]


@pytest.mark.parametrize(("rows", "ranks", "batch_size", "expected"), EVEN_BATCHES)
def test_validation_batches_are_as_many_on_every_rank(rows, ranks, batch_size, expected):
    # (33, 2, 8): ranks score 17 and 16 rows, 3 batches vs 2 of 8; of 7, 3 each. A sharded forward is a collective,
    # so one extra batch on one rank would hang the others.
    size = even_batch_size(rows, ranks, batch_size)
    assert size == expected
    assert len({-(-len(range(r, rows, ranks)) // size) for r in range(ranks)}) == 1


def test_fewer_validation_rows_than_processes_is_one_line():
    with pytest.raises(DataError, match="validation: 3 rows for 4 processes; each process needs at least one"):
        even_batch_size(3, 4, 8)
