"""The package's folders are the pipeline's stages and data flows one way: an import never climbs to a later stage.

An AST scan of peftlab/ (no import is executed): every `peftlab.<package>` import must point at the same or an
earlier layer, so no two packages import each other. The edges (report, cost, export, serve, compare, cloud) read run
folders through peftlab.rundir and call training only through peftlab.run's public functions.
"""

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "peftlab"
# Earlier layers first; a module may import its own layer's packages only where listed together as one stage.
LAYERS = [
    ("errors", "compat", "conf", "rundir", "lazy"),  # the bottom: errors, upstream workarounds, the run folder, names
    # loaded on first use
    ("config", "cli"),  # cli: every command line's error line, Hydra's composition errors in our words
    ("offline",),  # the sandbox: twins, GGUF import, demo data (reached through config targets)
    ("data",),
    ("models",),
    ("metrics", "modules"),
    ("trainer",),
    ("run",),
    ("report", "cost"),
    ("train", "export", "serve", "compare", "cloud"),  # the entry and the edges: they call run's public entry
]
LAYER = {package: i for i, packages in enumerate(LAYERS) for package in packages}
# run's public surface: what the edges may import from it (its __init__).
RUN_PUBLIC = {"peftlab.run"}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("peftlab"):
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.startswith("peftlab"))


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "peftlab"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO)
        if len(rel.parts) > 2:  # peftlab/<package>/... or peftlab/<module>.py
            yield path, rel.parts[1]
        elif rel.stem != "__init__":
            yield path, rel.stem


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYER), sorted((packages | modules) - set(LAYER))


def test_no_import_climbs_to_a_later_stage():
    climbs = []
    for path, package in _modules():
        for module, line in _imports(path):
            target = _package(module)
            if target not in ("peftlab", package) and LAYER[target] > LAYER[package]:
                climbs.append(f"{path.relative_to(REPO)}:{line} ({package}) imports {module}")
            edge_reaches_into_run = target == "run" and LAYER[package] > LAYER["run"] and module not in RUN_PUBLIC
            if edge_reaches_into_run:
                climbs.append(f"{path.relative_to(REPO)}:{line} imports run's internals: {module}")
    assert climbs == []


@pytest.mark.parametrize("limit", [250])
def test_modules_stay_small(limit):
    big = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > limit}
    assert big == {}
