"""Run folders written by earlier versions: their config.yaml upgraded to today's schemas when it is read back.

RunDir.read_config() applies it, so evaluate.py, export and serve keep reading runs trained before a key moved.
Each entry says what changed and when; an entry can go once runs that old no longer matter.
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from peftlab.config.peft_schema import OWN_SCHEMAS

# Keys that left a section (2026-12-01): dataset.local_name was read nowhere; hardware's SageMaker instance keys
# moved to the sagemaker group (launch only); model.unsupported_methods moved into each method's capabilities.
REMOVED = {
    "dataset": ("local_name",),
    "hardware": ("instance_type", "instance_count", "volume_size_gb", "spot", "max_run", "max_wait", "region"),
    "model": ("unsupported_methods",),
}


def upgrade_run_config(cfg: DictConfig) -> DictConfig:
    plain = OmegaConf.to_container(cfg, resolve=False)
    for section, keys in REMOVED.items():
        for key in keys:
            (plain.get(section) or {}).pop(key, None)
    if isinstance(plain.get("peft"), dict):
        plain["peft"] = with_method_record(plain["peft"])
    return OmegaConf.create(plain)


def with_method_record(node: dict[str, Any]) -> dict[str, Any]:
    """A run folder's config.yaml written before methods were YAML records (2026-12-01) has `method: lora` and the
    fields but no `_target_` or `capabilities`: take both from that option's YAML, so evaluate, export and serve
    still read old runs. Anything else comes back as it is."""
    method = node.get("method") if node is not None else None
    if node is None or "_target_" in node or method in OWN_SCHEMAS or not method:
        return node
    record = _option_record(str(method))
    if record is None or "_target_" not in record:
        return node
    upgraded = dict(node)
    upgraded["_target_"] = record["_target_"]
    if "capabilities" in record:
        upgraded.setdefault("capabilities", OmegaConf.to_container(record.capabilities))
    return upgraded


def _option_record(name: str) -> Any:
    """conf/peft/<name>.yaml with the options its defaults list inherits from (their own keys only)."""
    from peftlab.conf import CONF_DIR

    path = CONF_DIR / "peft" / f"{name}.yaml"
    if not path.is_file():
        return None
    own = OmegaConf.load(path)
    parents = [_option_record(p) for p in own.pop("defaults", []) if isinstance(p, str) and p != "_self_"]
    return OmegaConf.merge(*(p for p in parents if p is not None), own)
