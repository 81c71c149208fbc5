"""Export a training run: its adapter merged into a plain transformers model, or the adapter alone, with a card;
or, for llama.cpp and Ollama, the merged model as one GGUF file (format=gguf) or the LoRA adapter as a GGUF LoRA
(format=gguf_lora).

`export_run(run, out, merge=True)` is what `python -m peftlab.export run=... merge=true out=...` calls. The folder
is written next to `out` first and renamed into place, so a failed export leaves no half-written model behind.

The names below load peftlab/export/exporter.py on first use (PEP 562): `python -m peftlab.export` imports this
package before its Hydra main runs, and the exporter's imports (torch, transformers, peft, gguf: 6-9 s on 2 CPU
cores) would otherwise come before `--help` or a refused key.
"""

from peftlab.lazy import forwarded

__all__ = ["FORMATS", "NOT_MERGEABLE_MESSAGE", "ExportResult", "export_run"]
__getattr__ = forwarded(__name__, "peftlab.export.exporter", tuple(__all__))
