"""Parallel adapter (He et al. 2022, "Towards a Unified View of Parameter-Efficient Transfer Learning").

Beside each FFN block:  h = FFN(x) + s * W_up act(W_down x + b_down) + b_up,  with W_down: hidden -> hidden/rf.
Written here because AdapterHub `adapters` pins transformers 4.x and peft has no parallel adapter. W_up starts at
zero, so an untrained adapter leaves the model's output unchanged. Not mergeable: act() sits between the two
projections, so the adapter cannot be folded into the FFN's weights; adapter/ always holds it separately.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from peftlab.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
CONFIG_FILE = "parallel_adapter_config.json"
WEIGHTS_FILE = "parallel_adapter.safetensors"
ATTR = "parallel_adapter"


class ParallelAdapter(nn.Module):
    def __init__(self, hidden: int, bottleneck: int, scaling: float, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        self.act = ACTIVATIONS[activation]()
        self.scaling = scaling
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self._ffn_input: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, hidden) -> (B, T, hidden)
        return self.scaling * self.up(self.act(self.down(x)))

    # Hooks: remember the FFN's input, then add the adapter's output to the FFN's output.
    def _remember_input(self, module, args) -> None:
        self._ffn_input = args[0]

    def _add_to_output(self, module, args, output: torch.Tensor) -> torch.Tensor:
        x, self._ffn_input = self._ffn_input, None
        return output + self(x).to(output.dtype)


def _out_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if hasattr(module, "nf"):  # transformers' Conv1D (GPT-2)
        return module.nf
    raise ConfigError(f"peft.ffn_output: {type(module).__name__} is not a Linear layer")


def ffn_pairs(model: nn.Module, ffn_input: str, ffn_output: str) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    """(block, input module, output module) per block: <block>.<ffn_input> and <block>.<ffn_output>."""
    modules = dict(model.named_modules())
    pairs = []
    for name, module in modules.items():
        if name == ffn_input or name.endswith("." + ffn_input):
            block = name[: len(name) - len(ffn_input)]
            if block + ffn_output in modules:
                pairs.append((modules[block.rstrip(".")], module, modules[block + ffn_output]))
    if not pairs:
        raise ConfigError(
            f"peft.ffn_input={ffn_input!r} / peft.ffn_output={ffn_output!r}: no FFN blocks found in the model"
        )
    return pairs


def inject_parallel_adapters(model: nn.Module, config: dict) -> list[ParallelAdapter]:
    """Add one adapter per FFN block (a child of the block, beside the FFN: never inside a Sequential) + hooks."""
    adapters = []
    for block, ffn_in, ffn_out in ffn_pairs(model, config["ffn_input"], config["ffn_output"]):
        hidden = _out_features(ffn_out)
        adapter = ParallelAdapter(
            hidden, max(1, hidden // config["reduction_factor"]), config["scaling"], config["activation"]
        )
        adapter.to(next(ffn_out.parameters()).device)
        block.add_module(ATTR, adapter)
        ffn_in.register_forward_pre_hook(adapter._remember_input)
        ffn_out.register_forward_hook(adapter._add_to_output)
        adapters.append(adapter)
    model.peftlab_parallel_adapter_config = dict(config)
    return adapters


def adapter_state(model: nn.Module, head_modules: list[str], state_dict=None) -> dict[str, torch.Tensor]:
    """The adapters' and the head's weights: what adapter/ needs on top of the frozen base (from `state_dict` when
    given: weights gathered from shards)."""

    def keep(name: str) -> bool:
        return f".{ATTR}." in name or any(name.startswith(h + ".") or f".{h}." in name for h in head_modules)

    state = model.state_dict() if state_dict is None else state_dict
    return {k: v.detach().contiguous().cpu() for k, v in state.items() if keep(k)}


def save_parallel_adapters(model: nn.Module, out_dir: Path, head_modules: list[str], state_dict=None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {**model.peftlab_parallel_adapter_config, "head_modules": list(head_modules), "mergeable": False}
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    save_file(adapter_state(model, head_modules, state_dict), str(out_dir / WEIGHTS_FILE))


def load_parallel_adapters(model: nn.Module, folder: str | Path) -> nn.Module:
    """Inject adapters into a fresh base as saved, then load adapter and head weights (all must match)."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    inject_parallel_adapters(model, config)
    state = load_file(str(folder / WEIGHTS_FILE))
    missing = set(state) - set(model.state_dict())
    if missing:
        raise ConfigError(f"{folder}: adapter weights do not fit this model (e.g. {sorted(missing)[0]})")
    model.load_state_dict(state, strict=False)
    return model
