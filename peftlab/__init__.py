"""peftlab: config-driven parameter-efficient fine-tuning (Hydra -> DataModule -> peft model -> Lightning)."""

from peftlab.config.resolvers import register_resolvers
from peftlab.config.store import register_schemas

__version__ = "0.1.0"

# Resolvers must exist before Hydra composes conf/ (they appear in model/ and paths/ YAMLs).
register_resolvers()
register_schemas()  # structured configs the option YAMLs extend (config/store.py)
