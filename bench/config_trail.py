"""Which functions a reader follows the whole config through, from the training command to a finished run folder.

    python bench/config_trail.py                         # a 2-step default run
    python bench/config_trail.py dataset=sst2 ...        # any train.py overrides

Runs `python train.py trainer.max_steps=2 <overrides>` in this process under sys.setprofile and lists every function
of the package (and train.py) entered with the whole configuration as an argument: the DictConfig Hydra composed
(the object itself, not one of its group nodes) or the validated RunSettings. A function that takes a group node or
a group's settings (the dataset's, the hardware's) is listed apart: it reads one part, which is what a stage should
take. Also counts how often config.validate is entered. Issue 29's target: <= 15 functions in <= 10 files.
"""

import argparse
import runpy
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "trainer.enable_progress_bar=false"]


class Trail:
    """The profiler hook: records (file, function) for calls whose arguments carry the config."""

    def __init__(self):
        from peftlab.config import RunSettings

        self.settings_type = RunSettings
        self.composed: DictConfig | None = None
        self.whole: dict[str, int] = defaultdict(int)
        self.part: dict[str, int] = defaultdict(int)
        self.validate_calls = 0
        self.roots = (str(REPO / "peftlab") + "/", str(REPO / "train.py"))

    def kind(self, value) -> str | None:
        if isinstance(value, self.settings_type):
            return "whole"
        if isinstance(value, DictConfig):
            root = value._get_root()
            if self.composed is None and {"model", "peft", "dataset", "trainer"} <= set(root.keys()):
                self.composed = root  # the first one seen: what Hydra passed to main
            if value is self.composed:
                return "whole"
            if root is self.composed:
                return "part"
        if type(value).__module__.startswith("peftlab.config."):
            return "part"  # a group's settings (DatasetSettings, HardwareSettings, ...)
        return None

    def __call__(self, frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(self.roots):
            return
        code = frame.f_code
        name = f"{Path(code.co_filename).relative_to(REPO)}:{code.co_qualname}"
        if code.co_name == "validate" and "peftlab/config/" in code.co_filename:
            self.validate_calls += 1
        count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
        values = []
        for arg_name in code.co_varnames[:count]:
            if arg_name == "self":
                continue
            value = frame.f_locals.get(arg_name)
            values.extend(value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else [value])
        kinds = {self.kind(v) for v in values}
        if "whole" in kinds:
            self.whole[name] += 1
        elif "part" in kinds:
            self.part[name] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="train.py overrides")
    args = parser.parse_args()
    trail = Trail()
    with tempfile.TemporaryDirectory(prefix="config-trail-") as out:
        sys.argv = [str(REPO / "train.py"), "trainer.max_steps=2", f"hydra.run.dir={out}", *QUIET, *args.overrides]
        sys.setprofile(trail)
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exit_:
            if exit_.code:
                raise
        finally:
            sys.setprofile(None)
    files = sorted({name.split(":")[0] for name in trail.whole})
    print(f"the whole config: {len(trail.whole)} functions in {len(files)} files; validate entered "
          f"{trail.validate_calls} time(s)")  # fmt: skip
    for name in sorted(trail.whole):
        print(f"  {name}")
    print(f"a group's part only: {len(trail.part)} functions")
    for name in sorted(trail.part):
        print(f"  {name}")


if __name__ == "__main__":
    main()
