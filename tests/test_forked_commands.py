"""tests/forked_commands.py: a forked command answers as the same command started by `python` does (the suite's
command-line tests rely on it), and a command that changes what the libraries read at import starts fresh."""

import os
import signal
import subprocess
import sys

import forked_commands
import pytest
from conftest import REPO

SCRIPT = """import sys, os
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("PEFTLAB_PROBE"))
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise ValueError("raised")
if sys.argv[1] == "wait":
    import time; time.sleep(60)
sys.exit({"none": None, "3": 3}.get(sys.argv[1], sys.argv[1]))
"""


def _both(argv, **kwargs):
    fresh = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    return fresh, forked_commands.run(argv, timeout=120, **kwargs)


@pytest.mark.parametrize("outcome", ["none", "3", "a message", "raise"])
def test_a_forked_script_exits_prints_and_sees_its_folder_argv_and_environment_as_python_gives_them(tmp_path, outcome):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PEFTLAB_PROBE": "set"}
    fresh, forked = _both([sys.executable, str(script), outcome], cwd=tmp_path, env=env)
    assert forked.returncode == fresh.returncode == {"none": 0, "3": 3}.get(outcome, 1)
    assert forked.stdout == fresh.stdout == f"argv ['{outcome}'] cwd {tmp_path} env set\n"
    assert forked.stderr.splitlines()[0] == fresh.stderr.splitlines()[0] == "to stderr"
    assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1]  # the message, or the exception's line


def test_train_py_answers_the_same_forked_and_fresh(tmp_path):
    for args in (["--cfg", "job", "peft.r=16"], ["model=nope"]):
        fresh, forked = _both([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path)
        assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == 2 and forked.stderr.startswith("error: In 'config': Could not find 'model/nope'")


def test_a_killed_command_reports_the_signal_and_a_changed_import_time_variable_starts_fresh(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    started = forked_commands.Forked([sys.executable, str(script), "wait"], tmp_path, stdout=tmp_path / "log")
    assert started.wait(timeout=0.5) is None
    os.kill(started.pid, signal.SIGKILL)
    assert started.wait(timeout=30) == -signal.SIGKILL
    assert forked_commands.import_time_differences({**os.environ, "HF_HOME": str(tmp_path)}) == ["HF_HOME"]
    assert not forked_commands.forkable([sys.executable, str(script)], {**os.environ, "HF_HOME": str(tmp_path)})
    import torch  # noqa: F401  (it sets variables of its own, as in every test process that trained something)

    # what earlier tests in this process left in its environment (Lightning's PL_GLOBAL_SEED, ...) forks as well
    assert forked_commands.import_time_differences({**os.environ, "PEFTLAB_PROBE": "x"}) == []
    assert forked_commands.forkable([sys.executable, str(script)], {**os.environ, "PEFTLAB_PROBE": "x"})
