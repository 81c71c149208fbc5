"""What a peft method can do besides training, as one record: its YAML's `capabilities:`.

Validation refuses a shape or family before anything loads; export, serve, the sweep report and docs/methods.md
read the same record, so a method's limits are written once.
"""

from dataclasses import dataclass, field

from peftlab.config.checks import check_choice
from peftlab.config.tasks import SHAPE_NAMES

# What a run's adapter/ folder holds: peft's adapter folder, our parallel adapter, a whole transformers model, nothing.
ADAPTER_KINDS = ("peft", "parallel", "model", "none")


@dataclass
class Capabilities:
    """What a method can do besides training: validation, export, serve, the report and docs/methods.md read it.

    One record per method, its YAML's `capabilities:`; a shape or family refusal is checked before anything loads.
    """

    adapter: str = "peft"  # what adapter/ holds (ADAPTER_KINDS)
    # Why export merge=true cannot fold it into the base's weights (the adapter is exported alone); null: it can.
    not_mergeable: str | None = None
    # Why peftlab.serve cannot load it as one more adapter on its shared base; null: it can.
    not_servable: str | None = None
    base_4bit: bool = False  # the base loads in 4-bit (bitsandbytes: quant_type, double_quant, compute_dtype)
    # Task shape (config/tasks.py: classify, choose, seq2seq, causal) -> why the method cannot train it.
    refused_shapes: dict[str, str] = field(default_factory=dict)
    # Family (model.model_type, e.g. deberta-v2) or family/shape (t5/classify) -> why peft cannot apply it there.
    refused_families: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("capabilities.adapter", self.adapter, ADAPTER_KINDS)
        for shape in self.refused_shapes:
            check_choice("capabilities.refused_shapes", shape, SHAPE_NAMES)

    @property
    def mergeable(self) -> bool:
        return self.not_mergeable is None and self.adapter in ("peft", "model")

    @property
    def servable(self) -> bool:
        return self.not_servable is None and self.adapter == "peft"

    def refusal(self, model_type: str | None, shape: str) -> tuple[str, str] | None:
        """("family" or "shape", why) when this method cannot train `shape` on the family `model_type`."""
        for key in (model_type, f"{model_type}/{shape}"):
            if model_type and key in self.refused_families:
                return "family", self.refused_families[key]
        if shape in self.refused_shapes:
            return "shape", self.refused_shapes[shape]
        return None
