"""Shared fixtures: compose the real conf/ tree, shrunk for CPU tests (tmp outputs, no progress bar)."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Offline and isolated: no hub calls, datasets' cache in a per-session temp folder (set before `datasets` loads).
_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="peftlab-tests-"))
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)  # twins, tokenizers, tokenised splits
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["HF_DATASETS_CACHE"] = str(_SESSION_CACHE / "hf-datasets")
os.environ["PEFTLAB_CACHE_DIR"] = str(_SESSION_CACHE / "peftlab")
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the cores: one math thread each (and their commands)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import forked_commands  # noqa: E402  (after the variables above: the command server starts with them)
from hydra import compose, initialize_config_dir  # noqa: E402

import peftlab  # noqa: E402,F401  (registers resolvers)
from peftlab.compat import prepare_process  # noqa: E402
from peftlab.conf import CONF_DIR  # noqa: E402

prepare_process()  # as the command lines do: bitsandbytes loads only when a test asks for QLoRA

REPO = Path(__file__).resolve().parents[1]
CONF = CONF_DIR  # peftlab/conf: the package carries its config tree
SHARED_DATA = Path(os.environ.get("PEFTLAB_SHARED_DATA", REPO.parent / "shared" / "data"))

# Overrides that make any composed config test-sized and quiet.
TEST_OVERRIDES = [
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "trainer.log_every_n_steps=1",
]


def compose_config(overrides: list[str], output_dir: Path | None = None):
    """The real config tree with `overrides`; paths.output_dir points at a temp folder."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*TEST_OVERRIDES, *extra, *overrides])


def eval_config(overrides: list[str], output_dir: Path):
    """The evaluate.py config (conf/evaluate.yaml) with `overrides`."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "evaluate", overrides=[*overrides, f"paths.output_dir={output_dir}", "trainer.enable_progress_bar=false"]
        )


def option_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def run_cli(*args: str, script: str = "train.py", cwd: Path | None = None, timeout: int = 300):
    """`python <script> ...` (train.py or evaluate.py) as a process of its own, with the test environment (forked from
    a process that imported the libraries already: tests/forked_commands.py)."""
    return forked_commands.run([sys.executable, str(REPO / script), *args], cwd=cwd or REPO, timeout=timeout)


def shared_split_dir(name: str) -> Path:
    folder = SHARED_DATA / name
    if not (folder / "train.jsonl").is_file():
        pytest.skip(f"real data not present: {folder} (see README, 'Local data')")
    return folder


@pytest.fixture
def write_jsonl(tmp_path):
    """Write rows as train/validation JSONL files in a temp folder; returns the folder."""
    import json

    def _write(train: list[dict], validation: list[dict] | None = None, folder: str = "data") -> Path:
        out = tmp_path / folder
        out.mkdir(exist_ok=True)
        for split, rows in (("train", train), ("validation", validation if validation is not None else train)):
            (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return out

    return _write


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory):
    """Adapters for the serving tests (tests/serve_runs.py), trained once however many serve files run."""
    from serve_runs import train_serve_runs

    return train_serve_runs(tmp_path_factory.mktemp("serve"))


def pytest_xdist_make_scheduler(config, log):
    """`pytest -n 2` (the suite's default) sends whole files to a worker, so each module fixture is built once, and
    the serving files all to one worker (their session fixture trains 7 adapters).

    Why a scheduler and not `--dist loadgroup` with xdist_group marks: xdist 3.8 groups by a suffix it writes into
    `item._nodeid`, which pytest 9 no longer reads (`Node.nodeid` is `_id`): every test was scheduled alone, and each
    module fixture was built on both workers.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "serve" if Path(file).name.startswith("test_serve") else file

    return ByFile(config, log)
