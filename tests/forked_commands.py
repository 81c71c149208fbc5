"""The suite's commands (`python train.py ...`, `python -m peftlab.export ...`) started as forks of a process that has
already imported torch, transformers, peft and Lightning.

Why: a fresh `python train.py` spends 6-9 s of the suite's 2 cores importing those libraries before it reads its first
argument, and the suite starts dozens. A fork of a process that imported them once is still a process of its own:
Hydra parses its argv, it has its own working folder, environment, stdout and stderr files, exit status and signals,
and it runs the command's `__main__` as `python` would. What it cannot show is what a fresh interpreter imports, so a
test about imports (or one that changes a variable the libraries read at import) starts a real interpreter: `run`
falls back to `subprocess.run` for those, and tests of import laziness call `subprocess` themselves.

Nothing like it is in a kept library: pytest-forked forks the test, not the command under test, and
multiprocessing's forkserver runs functions, not `__main__` with an argv and a working folder.

The server (this file run as a script) answers JSON lines: `start` forks a command and answers its pid, `wait` reaps it
if it ended (else answers null: the server never blocks, so a command started from another thread is not held up).
"""

import atexit
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

# Variables the preloaded libraries (or the interpreter) read once, when they load: a command asking for other values
# starts a real interpreter. Those read while running (PL_GLOBAL_SEED, CUDA_VISIBLE_DEVICES, MASTER_PORT) reach a
# forked command as they reach a fresh one.
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "OMP_", "MKL", "OPENBLAS", "PYTHON",
                        "XDG_", "HOME")  # fmt: skip


# The server starts with this process's environment as tests/conftest.py set it (when it imports this module), not
# with whatever a test has patched when the first command starts.
SUITE_ENVIRONMENT = dict(os.environ)


def _preload() -> None:
    """What every training command imports, in the order a command line imports it (prepare_process first)."""
    import peftlab  # noqa: F401  (resolvers)
    from peftlab.compat import prepare_process

    prepare_process()
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import transformers  # noqa: F401


def _become(request: dict) -> None:
    """In the forked child: the command's folder, environment, argv and files, then its `__main__`. Never returns:
    the command's SystemExit (or exception) ends the process with the status `python` would give."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    if request["new_session"]:
        os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request["append"] else os.O_TRUNC)
    out = os.open(request["stdout"], flags, 0o644)
    os.dup2(out, 1)
    os.dup2(out if request["stderr"] is None else os.open(request["stderr"], flags, 0o644), 2)
    sys.argv = list(request["argv"])
    try:
        if request["module"]:
            sys.path[0] = request["cwd"]
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        else:
            sys.path[0] = str(Path(request["argv"][0]).resolve().parent)
            runpy.run_path(request["argv"][0], run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = _exit_code(exit.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    # The exit of `python` (Py_FinalizeEx) less its teardown of every module (1.5-2 s with torch, transformers and
    # Lightning loaded): threads joined and threading's exit hooks run (joblib's executor stops its workers there),
    # then the atexit handlers, then buffers are flushed and the process ends.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(code) -> int:
    """SystemExit's code as `python` turns it into an exit status (a message is printed, and means 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _reap(pid: int) -> int | None:
    """The exit status of a child that ended, else None (never blocks: other threads' commands may be waiting)."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


def serve() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what the libraries print goes nowhere, not into the replies
    _preload()
    replies.write(json.dumps({"env": dict(os.environ)}) + "\n")  # torch sets variables of its own when imported
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                replies.close()
                _become(request)
            replies.write(json.dumps({"pid": pid}) + "\n")
        else:
            replies.write(json.dumps({"returncode": _reap(request["pid"])}) + "\n")


class _Server:
    """One per test process, started on first use (its imports then overlap nothing: tests run one at a time)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=SUITE_ENVIRONMENT)  # fmt: skip
        atexit.register(self.proc.kill)
        self.lock = threading.Lock()
        self.env = self.answer()["env"]  # as its libraries left it: what a forked command starts with

    def ask(self, request: dict) -> dict:
        with self.lock:  # one question and its answer at a time (a test's fake SageMaker starts jobs from a thread)
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return self.answer()

    def answer(self) -> dict:
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the command server ended (exit {self.proc.poll()})")
        return json.loads(answer)


_server: _Server | None = None


def _started() -> _Server:
    global _server
    _server = _server or _Server()
    return _server


class Forked:
    """A started command, as subprocess.Popen gives it: `pid`, `poll()`, `wait(timeout)`, `returncode`.

    stdout: the file its output goes to; stderr: another file, or None for the same one (stderr=STDOUT); append:
    added to the files rather than written over; new_session: its own session (os.killpg reaches all its ranks)."""

    def __init__(self, argv: list[str], cwd: Path, stdout: Path, stderr: Path | None = None, env: dict | None = None,
                 append: bool = False, new_session: bool = False) -> None:  # fmt: skip
        module = argv[2] if argv[1] == "-m" else None
        self.returncode = None
        request = {"op": "start", "argv": [module or argv[1], *argv[(3 if module else 2) :]], "module": module,
                   "cwd": str(cwd), "env": dict(os.environ) if env is None else env, "stdout": str(stdout),
                   "stderr": None if stderr is None else str(stderr), "append": append,
                   "new_session": new_session}  # fmt: skip
        self.pid = _started().ask(request)["pid"]

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it still runs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            self.returncode = _started().ask({"op": "wait", "pid": self.pid})["returncode"]
            if self.returncode is None:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
        return self.returncode

    def poll(self) -> int | None:
        return self.wait(0)


def forkable(argv: list[str], env: dict) -> bool:
    """`python script.py ...` or `python -m module ...` with the server's import-time environment."""
    python = len(argv) > 1 and argv[0] == sys.executable and (argv[1] == "-m" or argv[1].endswith(".py"))
    return python and not import_time_differences(env)


def import_time_differences(env: dict) -> list[str]:
    """The variables read at import whose values in `env` are not those the server imported with."""
    preloaded = _started().env
    keys = {key for key in {*env, *preloaded} if key.startswith(IMPORT_TIME_PREFIXES)}
    # A variable the server's own imports set (torch: PYTORCH_NVML_BASED_CUDA_CHECK) is set in a fresh interpreter too.
    own = {key for key in preloaded if key not in SUITE_ENVIRONMENT and key not in env}
    return sorted(key for key in keys - own if env.get(key) != preloaded.get(key))


def run(argv: list[str], cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env), forked where it can."""
    env = dict(os.environ) if env is None else env
    if not forkable(argv, env):
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    folder = Path(tempfile.mkdtemp(prefix="forked-"))
    command = Forked(argv, cwd, folder / "stdout", folder / "stderr", env)
    ended = command.wait(timeout) is not None
    if not ended:
        os.kill(command.pid, signal.SIGKILL)
        command.wait(60)
    out, err = (_text(folder / name) for name in ("stdout", "stderr"))
    shutil.rmtree(folder)
    if not ended:
        raise subprocess.TimeoutExpired(argv, timeout, out, err)
    return subprocess.CompletedProcess(argv, command.returncode, out, err)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


if __name__ == "__main__":
    serve()
