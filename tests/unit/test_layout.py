"""The package's shape: five areas on floors, no import cycle, and no dataset named in code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

SRC = Path(__file__).resolve().parents[2] / "src" / "modelops"
ROOT = SRC.parents[1]
# Lower floors never import higher ones (top-level modules are the ground floor). Review sits above
# delivery: a report compares with the model deployed now and shows the diff merging will apply.
FLOORS = {"pipeline": 1, "delivery": 2, "review": 3, "runtime": 4, "monitoring": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """modelops modules a file imports, at any depth (lazy imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("modelops")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("modelops"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py") if "standins" not in p.parts}
    return {name: {m for m in imports(path) if m in files and m != name} for name, path in files.items()}


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS.get(parts[1], 0) if len(parts) > 2 else 0


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_lower_floors_never_import_higher_ones() -> None:
    wrong = [
        f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})"
        for a, deps in graph().items()
        for b in deps
        if a != "modelops.cli" and floor(b) > floor(a)
    ]
    assert not wrong, "\n".join(wrong)


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    big = {
        str(p.relative_to(ROOT)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 520
    }
    assert not big, big


# Words code uses for itself (`git status`, an HTTP status, pandas' "records", a JSON "time"): as
# literals they are not a dataset's; a dataset's own use of them is caught with its other names.
GENERIC = {"status", "time", "records"}


def shipped_names() -> tuple[set[str], set[str]]:
    """(every name a shipped declaration introduces, the distinctive ones worth a word search)."""
    names: set[str] = set()
    for decl in ROOT.glob("data/*/dataset.yaml"):
        spec = yaml.safe_load(decl.read_text())
        names |= {decl.parent.name, spec["target"], *spec["features"], *(spec.get("classes") or ())}
        names |= {spec["source"].get("name", "").partition("/")[2]}  # e.g. the R item credit_data
    names -= {"", "rownames", "id"}
    datasets = {p.parent.name for p in ROOT.glob("data/*/dataset.yaml")}
    return names, datasets | {n for n in names if "_" in n}


def literals(tree: ast.AST) -> list[str]:
    """String constants that are not docstrings."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def test_no_dataset_column_or_feature_name_in_src() -> None:
    """Declarations, not code: no string in src/ is a shipped name, and no dataset's own word
    (its name, a column like `compressive_strength`) appears anywhere, comments included."""
    names, distinctive = shipped_names()
    names -= GENERIC
    hits = []
    for path in SRC.rglob("*"):
        if path.suffix not in {".py", ".yml", ".yaml", ".js", ".md"}:
            continue
        text, rel = path.read_text(), path.relative_to(ROOT)
        if path.suffix == ".py":
            hits += [f"{rel}: literal {s!r}" for s in literals(ast.parse(text)) if s.strip() in names]
        hits += [
            f"{rel}: {word}"
            for word in sorted(distinctive)
            if re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text, re.IGNORECASE)
        ]
    assert not hits, "\n".join(hits)


# The modules that build, score or plot a model. Everything else (promote, report's bookkeeping,
# summary, batch, monitor) finds their files through pipeline/outputs.py: importing scikit-learn
# (and scipy.stats with it) costs ~2 s of CPU in each short-lived CLI process that needs a path.
SCIKIT_LEARN_USERS = {
    "modelops.cli",  # lazily, in the train/evaluate/package verbs
    "modelops.config",  # lazily, the hyper-parameter check (remembered: config.verdicts_dir)
    "modelops.tasks",  # lazily, estimators and metrics by name
    "modelops.pipeline.train",
    "modelops.pipeline.evaluate",
    "modelops.pipeline.package",
    "modelops.pipeline.plots",
    "modelops.pipeline.reference",
    "modelops.pipeline.run",
    "modelops.review.figures",
    "modelops.review.report",
}
STAGES = {"modelops.pipeline.train", "modelops.pipeline.evaluate", "modelops.pipeline.package"}


def test_only_the_modules_that_build_or_score_a_model_import_scikit_learn() -> None:
    heavy = {}
    for path in SRC.rglob("*.py"):
        if "standins" in path.parts or (name := module_name(path)) in SCIKIT_LEARN_USERS:
            continue
        tree = ast.parse(path.read_text())
        found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if hits := sorted(m for m in found if m.split(".")[0] == "sklearn" or m in STAGES):
            heavy[name] = hits
    assert not heavy, heavy
