"""Forgetting in a comparison: each confirmed run's loss change on a fixed general-text sample (causal LMs).

The sample is compare.forgetting.texts, a JSONL file of text no compared task trains on (its first `rows` rows of
`column`), e.g. the validation file of another dataset: for the SmolLM2 comparisons, AG News' news articles. Each run
of the tuned arm is scored with its adapter and with its base (run.forgetting) into <out>/forgetting.json; a rerun
scores only the runs missing there.
"""

import json
import logging
from pathlib import Path

from peftlab.errors import ConfigError
from peftlab.report.collect import RunRecord
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)


def read_texts(path: str | Path, column: str, rows: int) -> list[str]:
    """The first `rows` values of `column` in a JSONL file; a missing file or column is one line naming the key."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"compare.forgetting.texts={path}: no such file (a JSONL file of general text)")
    texts = []
    with file.open() as lines:
        for number, line in enumerate(lines, start=1):
            if len(texts) == rows:
                break
            row = json.loads(line)
            if column not in row:
                raise ConfigError(f"compare.forgetting.column={column}: not in {file} (line {number} has {list(row)})")
            texts.append(str(row[column]))
    return texts


def measure_forgetting(out: Path, runs: list[RunRecord], texts: list[str]) -> list[dict]:
    """One row per run: method, seed, base_loss, loss, forgetting (loss - base_loss, nats per token)."""
    from peftlab.run import forgetting

    path = out / "forgetting.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {row["run"] for row in rows}
    for run in runs:
        if str(run.folder) in done:
            continue
        folder = RunDir(run.folder)
        found = forgetting(folder.read_config(), texts, str(folder.adapter))
        rows.append({"run": str(run.folder), "method": run.method, "seed": run.seed, **found})
        path.write_text(json.dumps(rows, indent=2))
        log.info("forgetting %s seed %d: %+.4f nats per token", run.method, run.seed, found["forgetting"])
    return rows


def read_forgetting(out: Path) -> list[dict]:
    path = out / "forgetting.json"
    return json.loads(path.read_text()) if path.is_file() else []
