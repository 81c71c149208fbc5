"""Our parallel adapter against its formula: h = FFN(x) + s * W_up act(W_down x + b_down) + b_up."""

import json

import pytest
import torch
from torch import nn

from peftlab.errors import ConfigError
from peftlab.models.parallel_adapter import (
    CONFIG_FILE,
    inject_parallel_adapters,
    load_parallel_adapters,
    save_parallel_adapters,
)

CONFIG = {"reduction_factor": 4, "scaling": 2.5, "activation": "relu", "ffn_input": "mlp", "ffn_output": "mlp.2"}


class Block(nn.Module):
    """One residual FFN block: x + mlp(x), with mlp = Linear(16, 64) -> GELU -> Linear(64, 16)."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16))

    def forward(self, x):
        return x + self.mlp(x)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_zero_init_leaves_output_unchanged():
    torch.manual_seed(0)
    model, x = Toy(), torch.randn(3, 5, 16)
    before = model(x)
    adapters = inject_parallel_adapters(model, CONFIG)
    assert len(adapters) == 2 and adapters[0].down.out_features == 16 // 4
    assert torch.equal(model(x), before)


def test_forward_matches_hand_computation_on_one_layer():
    torch.manual_seed(1)
    block, x = Block(), torch.randn(2, 7, 16)
    ffn = block.mlp(x)  # before injection: the plain FFN
    (adapter,) = inject_parallel_adapters(block, CONFIG)
    nn.init.normal_(adapter.up.weight)
    nn.init.normal_(adapter.up.bias)
    delta = torch.relu(x @ adapter.down.weight.T + adapter.down.bias) @ adapter.up.weight.T + adapter.up.bias
    torch.testing.assert_close(block(x), x + ffn + 2.5 * delta)


def test_parameter_count_is_two_h_b_plus_biases_per_layer():
    model = Toy()
    inject_parallel_adapters(model, CONFIG)
    h, b = 16, 16 // 4
    count = sum(p.numel() for n, p in model.named_parameters() if "parallel_adapter" in n)
    assert count == 2 * (2 * h * b + b + h)


def test_save_and_reload_gives_identical_outputs(tmp_path):
    torch.manual_seed(2)
    model, x = Toy(), torch.randn(2, 4, 16)
    fresh = Toy()
    fresh.load_state_dict(model.state_dict())
    for adapter in inject_parallel_adapters(model, CONFIG):
        nn.init.normal_(adapter.up.weight)
    nn.init.normal_(model.head.weight)
    save_parallel_adapters(model, tmp_path, head_modules=["head"])
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["mergeable"] is False
    reloaded = load_parallel_adapters(fresh, tmp_path)
    assert torch.equal(reloaded(x), model(x))


def test_unknown_ffn_module_is_a_named_error():
    with pytest.raises(ConfigError, match=r"peft\.ffn_input='mlp_x'"):
        inject_parallel_adapters(Toy(), {**CONFIG, "ffn_input": "mlp_x"})
