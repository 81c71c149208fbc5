"""Every `python ...` command written in README.md and docs/*.md parses and composes: documentation and configs
cannot drift apart.

Hydra entry points are composed with the real conf/ tree (each value of a -m sweep once) and validated as the command
line would validate them before loading anything; so are the Hydra apps run with `python -m` (export, cost), whose
arguments go through their own checks; the other command lines go through their own argument parsers.
Placeholders (`<date>`, `...`) stand in for values; nothing is trained. The README's config-group table lists every
option of every group, and every relative link of the pages leads to a file that exists.
"""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from conftest import CONF, REPO, option_names
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from peftlab.config import validate

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]  # every page whose commands are checked
README_MAX_LINES = 250
MAX_CELL = 150  # characters in one cell of the README's tables
PLACEHOLDER = "PLACEHOLDER"
HYDRA_APPS = {"train.py": "config", "evaluate.py": "evaluate", "launch_sagemaker.py": "launch_sagemaker"}
# `python -m <module>` Hydra apps -> their config in conf/; each __main__ turns the config into its function's
# arguments with `arguments(cfg)`, which reads no run folder.
MODULE_APPS = {"peftlab.export": "export", "peftlab.cost": "cost"}
# evaluate.py with a run folder takes model and method from that run: composed, not validated here.
FROM_RUNS = ("adapter=", "compare=", "source=")


def _shell_lines(text: str) -> list[str]:
    """Lines of ```bash blocks (continuations joined) and inline `python ...` spans of the prose."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`(python [^`]+)`", text)
    return lines


def page_commands(page: Path) -> list[list[str]]:
    """argv lists (from `python` on) of every python command in one page (README.md, docs/*.md)."""
    commands = []
    for line in _shell_lines(page.read_text()):
        for part in line.split("&&"):
            part = re.sub(r"<[^>]*>", PLACEHOLDER, part.split(" #")[0])
            words = [w for w in shlex.split(part) if w not in ("...", PLACEHOLDER)]  # "<the job's overrides>"
            if "torchrun" in words[:1]:  # torchrun <its options> train.py <overrides>
                words = ["python", *words[next(i for i, w in enumerate(words) if w.endswith(".py")) :]]
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value python ...
                words = words[1:]
            if words[:1] == ["python"]:
                commands.append(words[1:])
    return commands


def _sweep_points(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each `-m` sweep (a,b,c): every value composes, not every combination."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    points = [plain]
    for o in parsed:
        if o.is_sweep_override():
            points += [[*plain, f"{o.get_key_element()}={value}"] for value in o.sweep_string_iterator()]
    return points


def _overrides(args: list[str]) -> list[str]:
    """Hydra's flags (-m, --cfg job, --help) out; `key=<placeholder>` out (the value is the reader's)."""
    kept, skip = [], False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = arg in ("--cfg", "-c", "--package", "-p")
            continue
        if arg.split("=", 1)[-1] not in (PLACEHOLDER, "..."):
            kept.append(arg)
    return kept


def _check_hydra_app(script: str, args: list[str]) -> None:
    overrides = _overrides(args)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for point in _sweep_points(overrides):
            cfg = compose(HYDRA_APPS[script], overrides=point, return_hydra_config=True)
            if not any(o.startswith(FROM_RUNS) for o in point):
                validate(cfg, check_files=False)  # data folders are the reader's


def _check_module_app(module: str, args: list[str]) -> None:
    """Composed as its command line composes it (a placeholder value becomes `x`), then its arguments checked."""
    overrides = [a.replace(PLACEHOLDER, "x") for a in args if not a.startswith("-")]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(MODULE_APPS[module], overrides=overrides, return_hydra_config=True)
    importlib.import_module(f"{module}.__main__").arguments(cfg)


def _check_compare(args: list[str]) -> None:
    """Composed as its command line composes it; the plan made, which validates every method's jobs (nothing runs)."""
    from peftlab.compare.plan import make_plan

    overrides = [a.replace(PLACEHOLDER, "x") for a in args if not a.startswith("-")]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        make_plan(compose("compare", overrides=overrides), overrides, REPO, check_files=False)


def _check_module(module: str, args: list[str]) -> None:
    if module == "peftlab.train":  # the installed training command: train.py's Hydra main (train.py is its shim)
        _check_hydra_app("train.py", args)
    elif module in MODULE_APPS:
        _check_module_app(module, args)
    elif module == "peftlab.serve":
        from peftlab.serve.__main__ import parse_args

        parse_args(args)
    elif module == "peftlab.compare":
        _check_compare(args)
    elif module in ("peftlab.report", "peftlab.cloud.container"):  # one folder argument / none: the module exists
        assert importlib.util.find_spec(module) is not None
    else:
        raise AssertionError(f"the docs run python -m {module}: add how to check it here")


# (page, argv) of every command of every page.
COMMANDS = [(page.relative_to(REPO).as_posix(), argv) for page in PAGES for argv in page_commands(page)]
README_COMMANDS = [argv for page, argv in COMMANDS if page == "README.md"]


def test_the_readme_has_commands_of_every_kind():
    scripts = {c[0] if c[0] != "-m" else c[1] for c in README_COMMANDS}
    assert {"train.py", "evaluate.py", "launch_sagemaker.py", "peftlab.export", "peftlab.serve"} <= scripts
    assert ["train.py", "model=deberta", "peft=lora"] in README_COMMANDS  # the design card's own command


@pytest.mark.parametrize(("page", "argv"), COMMANDS, ids=[f"{p}: {' '.join(c)[:80]}" for p, c in COMMANDS])
def test_readme_command_composes(page, argv):
    if argv[0] == "-m":
        _check_module(argv[1], argv[2:])
    elif argv[0] in HYDRA_APPS:
        _check_hydra_app(argv[0], argv[1:])
    else:  # a script of the repository (bench/...): it exists
        assert (REPO / argv[0]).is_file(), f"{page} names {argv[0]}, which does not exist"


def _table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """First cell -> the other cells of the table under `heading`; a row with an empty first cell continues the one
    above (its cells joined to that row's)."""
    section = text.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    table: dict[str, list[str]] = {}
    for first, *rest in ([cell.strip() for cell in row] for row in rows[2:]):
        key = first.strip("`") or list(table)[-1]
        table[key] = [f"{a} {b}".strip() for a, b in zip(table.get(key, [""] * len(rest)), rest, strict=True)]
    return table


def test_the_readme_is_short_and_its_cells_too():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "README.md: move the details into a docs/ page"
    long = [cell for line in text.splitlines() if line.startswith("|") for cell in line.split("|")]
    assert not [cell for cell in long if len(cell.strip()) > MAX_CELL], f"README cells over {MAX_CELL} characters"


def test_the_readme_lists_every_option_of_every_group():
    """One row per config group (a folder of option YAMLs in conf/), naming all its options; callbacks: every entry."""
    rows = _table_rows(README.read_text(), "## Config groups")
    groups = {p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")} - {"."}
    assert set(rows) == groups
    for group, (options, _) in rows.items():
        missing = set(option_names(group)) - set(re.findall(r"[\w-]+", options))
        assert not missing, f"README's config groups: {group} does not list {sorted(missing)}"
    entries = OmegaConf.load(CONF / "callbacks" / "default.yaml")
    missing = [name for name in entries if name not in rows["callbacks"][1]]
    assert not missing, f"README's config groups: the callbacks row does not name {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_lead_to_files(page):
    """Relative links ([text](path), [text](path#anchor)) of each page name files or folders that exist."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to {missing}, which do not exist"
