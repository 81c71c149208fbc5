"""Our schemas as Hydra structured configs: each option YAML of a group starts from its group's schema.

A dataset YAML then states only what differs from DatasetSettings' defaults, and a wrong type fails while Hydra
composes (`dataset.batch_size=abc`: "Value 'abc' ... could not be converted to Integer"). Cross-field rules stay in
each schema's __post_init__ (config/validate.py), which keeps its one-line errors.
Stored under `schema/`, so they are not selectable options of the groups themselves:
    defaults:
      - /schema/dataset@_here_
      - _self_
"""

from hydra.core.config_store import ConfigStore

from peftlab.config.dataset_schema import DatasetSettings

SCHEMAS = {"dataset": DatasetSettings}


def register_schemas() -> None:
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group="schema", name=group, node=schema)
