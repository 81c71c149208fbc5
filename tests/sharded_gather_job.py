"""Rank job of tests/test_sharded_gather.py: a trained run's weights sharded across 2 CPU processes by FSDP2 (gloo),
then gathered by peftlab.run.gather and written as adapter/ by rank 0.

    python -m torch.distributed.run --nproc-per-node 2 tests/sharded_gather_job.py <run> <out> [<run> <out> ...]

Lightning's FSDP strategy refuses CPUs (and torch's FSDP1 needs an accelerator), but FSDP2's `fully_shard` shards
a module across CPU processes: each rank then holds half of every weight (DTensor shards), as on GPUs.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from peftlab.config import validate
from peftlab.config.tasks import LABELLED_SHAPES
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.models.methods import apply_method, load_trained, save_trained, saves_whole_model
from peftlab.run.gather import gather_full_state
from peftlab.rundir import RunDir


def trained_model(run: Path):
    """The run's method applied to a fresh base (trainable as in training), holding the run's trained weights."""
    settings = validate(RunDir(run).read_config(), check_files=False)
    head = list(settings.model.head_modules) if settings.shape in LABELLED_SHAPES else []
    pad = load_tokenizer(settings.model).pad_token_id

    def base():
        return load_base_model(settings.model, settings.shape, list(settings.dataset.labels), pad_token_id=pad)

    model = apply_method(base(), settings.peft, head, settings.shape)
    trained = load_trained(base(), settings.peft, RunDir(run).adapter).state_dict()
    model.load_state_dict(trained, strict=False)
    return model, settings, head


def shard_gather_write(run: Path, out: Path, mesh) -> None:
    model, settings, head = trained_model(run)
    for block in next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList)):  # each layer its own unit
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    sharded = [p for p in model.parameters() if p.requires_grad]
    assert all(type(p).__name__ == "DTensor" and p.to_local().numel() < p.numel() for p in sharded if p.numel() > 1)
    with torch.no_grad():  # the sharded model still runs (its forward gathers each unit's weights); with labels, as
        model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([1]))  # in training (config.problem_type)
    state = gather_full_state(model, frozen=saves_whole_model(settings.peft))
    if dist.get_rank() == 0:
        save_trained(model, settings.peft, head, out, state)
    else:
        assert state == {}, "only rank 0 receives the whole weights"
    dist.barrier()  # the next model is sharded once rank 0 has written this one


def main() -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    args = sys.argv[1:]
    for run, out in zip(args[::2], args[1::2], strict=True):
        shard_gather_write(Path(run), Path(out), mesh)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
