"""Our schemas as Hydra structured configs: each option YAML of a group starts from its group's schema.

An option then states only what differs from the schema's defaults, and Hydra types and closes its keys while it
composes: `dataset.batch_size=abc` ("Value 'abc' ... could not be converted to Integer") and `model.nme=x` (not a key
of ModelSettings) fail before any code of ours runs; peftlab/cli.py prints either as one line naming the full key.
Rules between fields stay in each schema's __post_init__ and rules between groups in config/validate.py.
Stored under `schema/`, so they are not selectable options of the groups themselves:
    defaults:
      - /schema/dataset@_here_
      - _self_
The trainer group is open (any Lightning Trainer argument, `+trainer.<arg>=`), callbacks and logger are Lightning
objects by `_target_` (their constructors check their arguments when instantiated), the peft library's methods are
checked by peft's own config classes (config/peft_schema.py), the cost group's price table by the cost package
(which the config stage does not import), and the sagemaker node, which launch_sagemaker.yaml extends with the AWS
keys, by config/sagemaker_schema.py when a launch reads it: none has a schema here.
"""

from hydra.core.config_store import ConfigStore

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.config.method_schema import OWN_SCHEMAS
from peftlab.config.objective_schema import ObjectiveSettings
from peftlab.config.schema import HardwareSettings, ModelSettings, OptimSettings, PathSettings

# schema/<name> -> its dataclass; peftlab's own peft methods are schema/peft/<method> (conf/peft/full.yaml ...).
SCHEMAS: dict[str, type] = {
    "dataset": DatasetSettings,
    "model": ModelSettings,
    "hardware": HardwareSettings,
    "optim": OptimSettings,
    "paths": PathSettings,
    "objective": ObjectiveSettings,
    **{f"peft/{method}": schema for method, schema in OWN_SCHEMAS.items()},
}


def register_schemas() -> None:
    share_config_store()
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        group, _, option = f"schema/{name}".rpartition("/")
        store.store(group=group, name=option, node=schema)


def share_config_store() -> None:
    """Let Hydra's per-lookup copies of its config repository share the one ConfigStore instead of copying it.

    Hydra 1.3.8 deep-copies its whole repository, the ConfigStore's every node with it, once per group whose options
    it lists: `--help` lists each group several times, 139 copies of about 15 ms here. A node is copied when it is
    loaded (ConfigStore.load), so a copy of the store guards nothing; Hydra's main branch stopped holding the store
    in its structured-config source for this reason (facebookresearch/hydra#2928, not in a 1.3 release). No-op
    where ConfigStore defines its own copy.
    """
    if "__deepcopy__" not in vars(ConfigStore):
        ConfigStore.__deepcopy__ = lambda self, memo: self
