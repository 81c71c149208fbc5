"""A trained SmolLM2 run exported as GGUF at several precisions, each read back and scored against the merged model.

    python bench/gguf_roundtrip.py --run <a causal LoRA run folder> --data <its dataset folder> --rows 64
    python bench/gguf_roundtrip.py ... --llama-python <a python with llama-cpp-python>   # also answer with llama.cpp

For each dtype: `export_run(format=gguf)`, then the file read back through transformers' GGUF import; on the first
--rows validation rows (prompt + reference, teacher-forced) the share of real-token positions whose arg-max token
agrees with the merged float32 model's, and the largest logit difference. The adapter alone (format=gguf_lora) is
checked by the export itself. With --llama-python, llama.cpp (through llama-cpp-python, in that interpreter) answers
one validation prompt greedily from the f16 file, and from the base GGUF + the LoRA file; printed beside
transformers' greedy answer of the merged model.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from peftlab.compat import prepare_process

prepare_process()

LLAMA_SCRIPT = """
import json, sys
from llama_cpp import Llama
model, lora, prompt, tokens = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
llm = Llama(model_path=model, lora_path=lora, n_ctx=512, verbose=False, seed=0)
out = llm(prompt, max_tokens=tokens, temperature=0.0, top_k=1)
print(json.dumps({"text": out["choices"][0]["text"], "ids": llm.tokenize(prompt.encode(), add_bos=False)}))
"""


def validation_rows(run: Path, data: str, rows: int):
    from peftlab.config import validate
    from peftlab.data.datamodule import TextDataModule
    from peftlab.models.loading import load_tokenizer
    from peftlab.rundir import RunDir

    _, run_dir = RunDir.of_adapter(run)
    cfg = run_dir.read_config()
    cfg.dataset.data_dir = data
    cfg.dataset.max_eval_rows = rows
    settings = validate(cfg)
    tokenizer = load_tokenizer(settings.model)
    module = TextDataModule(settings.dataset, tokenizer, settings.shape, seed=settings.seed)
    module.setup("validate")
    return settings, tokenizer, module


def agreement(model, reference_model, module) -> tuple[float, float]:
    import torch

    same = total = 0
    worst = 0.0
    with torch.inference_mode():
        for batch in module.val_dataloader():
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            got, want = model(**inputs).logits, reference_model(**inputs).logits
            real = batch["attention_mask"].bool()
            same += int((got.argmax(-1) == want.argmax(-1))[real].sum())
            total += int(real.sum())
            worst = max(worst, float((got - want).abs()[real].max()))
    return same / total, worst


def llama_answer(python: str, model: Path, lora: Path | None, prompt: str, tokens: int) -> dict:
    args = [python, "-c", LLAMA_SCRIPT, str(model), str(lora or ""), prompt, str(tokens)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(args) -> int:
    import torch
    import transformers

    from peftlab.export import export_run
    from peftlab.export.gguf_card import base_gguf
    from peftlab.export.merge import merge_peft
    from peftlab.modules.generation import generate_answers

    run, out = Path(args.run), Path(args.out or tempfile.mkdtemp(prefix="gguf-"))
    settings, tokenizer, module = validation_rows(run, args.data, args.rows)
    merged = merge_peft(settings, run / "adapter", "float32").model.eval()
    table, files = [], {}
    for dtype in args.dtypes:
        result = export_run(run, out / dtype, format="gguf", dtype=dtype)
        file = result.gguf.file
        files[dtype] = file
        read = transformers.AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
        top1, worst = agreement(read.eval(), merged, module)
        table.append((dtype, file.stat().st_size / 2**20, top1, worst, result.gguf.same_token_ids))
        print(dtype, table[-1], flush=True)
    lora = export_run(run, out / "lora", format="gguf_lora", dtype="f16").gguf
    print(f"\n{settings.model.name} + {settings.peft.method}; {args.rows} validation rows of {settings.dataset.name}")
    print("| GGUF dtype | file (MiB) | top-1 agreement with the merged model | max abs logit diff | same token ids |")
    print("|---|---|---|---|---|")
    for dtype, mib, top1, worst, same in table:
        print(f"| {dtype} | {mib:.1f} | {top1:.4f} | {worst:.3g} | {same} |")
    print(f"| LoRA alone (gguf_lora f16) | {lora.file.stat().st_size / 2**20:.2f} | {lora.top1_agreement:.4f} "
          f"(probe sentences) | {lora.max_logit_diff:.3g} | - |")  # fmt: skip
    if args.llama_python:
        batch = next(iter(module.val_dataloader()))
        ids = batch["prompt_input_ids"][:1][batch["prompt_attention_mask"][:1].bool()].tolist()
        prompt = tokenizer.decode(ids)
        generation = {**dict(settings.dataset.generation), "max_new_tokens": args.tokens}
        ours = generate_answers(merged, tokenizer, {k: v[:1] for k, v in batch.items()}, generation, causal=True)[0]
        print(f"\nprompt: {prompt!r}\ntransformers (merged, float32): {ours!r}")
        for name, model, adapter in (("f16", files.get("f16"), None), ("base GGUF + LoRA", base_gguf(settings)[0],
                                                                           lora.file)):  # fmt: skip
            if model:
                answer = llama_answer(args.llama_python, Path(model), adapter, prompt, args.tokens)
                same = answer.get("ids") == ids
                print(f"llama.cpp ({name}): {answer.get('text', answer)!r}; prompt token ids as ours: {same}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a causal LoRA run folder (config.yaml, adapter/)")
    parser.add_argument("--data", required=True, help="the run's dataset folder (validation.jsonl)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", default=["f32", "f16", "q8_0", "q4_0"])
    parser.add_argument("--tokens", type=int, default=32, help="tokens llama.cpp and transformers generate")
    parser.add_argument("--llama-python", default=None, help="a python interpreter with llama-cpp-python installed")
    parser.add_argument("--out", default=None)
    sys.exit(main(parser.parse_args()))
