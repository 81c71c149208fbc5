"""Each config file is read and parsed once per process, however many compositions read it.

Hydra reads a file and parses its YAML into a fresh OmegaConf node in every composition that uses it: a 6-job sweep
composes 7 times (its own config, then each job's: compose_once.py), 17 files each, about 2.4 ms a file on 2 cores
(YAML 1.3 ms, the node 1.2 ms), and `--help` composes once per group it lists. The package's config source keeps what it
parsed, by the file's path, mtime and size, and hands out a deep copy (0.5 ms): Hydra's repository takes the
`defaults` list out of the node it gets and merges nodes into the composed config without copying them, so no two
compositions may share one. Hydra 1.3 keeps no such cache (its CachingConfigRepository lives for one composition);
files inside zip archives are read as before.
"""

import copy
import os
from typing import Any

PARSED: dict[tuple, Any] = {}  # (source, file, mtime_ns, size) -> the ConfigResult the source made of the file


def parse_each_file_once() -> None:
    """Wraps the pkg:// source's reader as Hydra's repository meets it: Hydra's plugin scan runs the modules of its
    core plugins again (the source classes among them), so a class patched at import would be replaced."""
    from hydra._internal.config_repository import ConfigRepository

    initialize = ConfigRepository.initialize_sources
    if getattr(initialize, "parses_once", False):
        return

    def initialize_sources(self: Any, config_search_path: Any) -> None:
        initialize(self, config_search_path)
        for source in self.sources:
            if source.scheme() == "pkg":
                _read_each_file_once(type(source))

    initialize_sources.parses_once = True
    ConfigRepository.initialize_sources = initialize_sources


def _read_each_file_once(source_class: type) -> None:
    read = source_class._read_config
    if getattr(read, "parses_once", False):
        return

    def _read_config(self: Any, res: Any) -> Any:
        try:
            stat = os.stat(res)  # a file on disk; a zip member is no os.PathLike
        except TypeError:
            return read(self, res)
        key = (self.provider, self.path, str(res), stat.st_mtime_ns, stat.st_size)
        if key not in PARSED:
            PARSED[key] = read(self, res)
        parsed = copy.copy(PARSED[key])
        parsed.config, parsed.header = copy.deepcopy(parsed.config), dict(parsed.header)
        return parsed

    _read_config.parses_once = True
    source_class._read_config = _read_config
