"""A model folder peftlab writes once into the cache (a tiny twin, a GGUF conversion) and reuses after.

Why by hand: no library offers "build this folder unless it already holds what this spec describes", atomically for
parallel jobs. A marker file beside the checkpoint records the spec; a folder without one is never overwritten.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from peftlab.errors import ConfigError


def write_once(folder: str, marker_name: str, spec: dict, build: Callable[[Path], None], foreign: str) -> Path:
    """`folder` as build(tmp) writes it, unless its marker already holds `spec`; returns the folder.

    `foreign` says what the folder is not, for the error when it holds something else (e.g. an exported model).
    """
    out = Path(folder).expanduser()
    marker = out / marker_name
    if marker.is_file() and json.loads(marker.read_text()) == spec and (out / "config.json").is_file():
        return out
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise ConfigError(
            f"model.name_or_path={folder}: holds a model {foreign}; not overwriting it "
            "(to load its weights set model.init=null)"
        )
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / marker_name).write_text(json.dumps(spec, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)  # a stale folder (another spec) is rebuilt
    tmp.replace(out)  # atomic: a parallel job sees either no folder or a whole one
    return out
