"""The layout keeps its shape: each package imports only the first-party packages the architecture guide (docs/guides/architecture.md) allows."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FIRST_PARTY = {"common", "ingest", "sim", "training", "serving", "evaluation", "devtools", "bench", "tests", "demo", "review",
               "archive"}
ALLOWED = {
    "common": set(),
    "ingest": {"common"},
    "sim": {"common", "ingest"},
    "training": {"common", "ingest"},
    "serving": {"common", "ingest"},
    "evaluation": {"common", "ingest", "sim", "serving"},
    "devtools": {"common"},
    "review": {"common", "ingest"},  # the desk reads the service over HTTP, not through serving
    "archive": {"common", "ingest", "sim", "serving", "evaluation"},
}
#: The synthetic feed is serving's one door to the simulator (imported only when it is the source).
EXCEPTIONS = {"serving/feed.py": {"sim"}, "training/cli.py": {"review"}}  # train-ensemble --reviewer web serves the desk
#: serving runs without these (checked at import time too, in test_serving).
SERVING_FORBIDDEN = {"torch", "onnx", "sim", "training"}


def imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_layout_allows(package):
    files = {str(f.relative_to(ROOT)): f for f in (ROOT / package).rglob("*.py")}
    wrong = {name: sorted((imports(f) & FIRST_PARTY) - ALLOWED[package] - {package} - EXCEPTIONS.get(name, set()))
             for name, f in files.items()}
    assert not {f: w for f, w in wrong.items() if w}


def test_serving_needs_neither_torch_nor_the_simulator():
    used = {str(f.relative_to(ROOT)): sorted(imports(f) & SERVING_FORBIDDEN) for f in (ROOT / "serving").rglob("*.py")}
    assert used.pop("serving/feed.py") == ["sim"]
    assert not {f: u for f, u in used.items() if u}


def test_the_cadence_is_defined_once():
    offenders = [str(f.relative_to(ROOT)) for package in ALLOWED for f in (ROOT / package).rglob("*.py")
                 if f.name != "clock.py" and ("96 * u.min" in f.read_text() or "5760" in f.read_text())]
    assert not offenders
