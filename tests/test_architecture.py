"""The layout keeps its shape: each package imports only the first-party packages the architecture guide (docs/guides/architecture.md) allows."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GUIDE = ROOT / "docs" / "guides" / "architecture.md"
FIRST_PARTY = {"common", "ingest", "sim", "training", "serving", "evaluation", "devtools", "bench", "tests", "demo", "review",
               "archive"}


def layout() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The guide's table: each package's allowed first-party imports, and the modules allowed more."""
    allowed, exceptions = {}, {}
    for row in GUIDE.read_text().splitlines():
        m = re.match(r"^\| `(\w+)/` \|.*\| (?P<rule>[^|]*) \|$", row)
        if not m or m[1] in ("tests", "bench", "deploy"):
            continue
        rule, _, more = m["rule"].partition(";")
        allowed[m[1]] = set(re.findall(r"`(\w+)`", rule)) & FIRST_PARTY
        for module, names in re.findall(r"`([\w/]+\.py)` also ((?:`\w+`(?:, )?)+)", more):
            exceptions[module] = set(re.findall(r"`(\w+)`", names))
    return allowed, exceptions


ALLOWED, EXCEPTIONS = layout()
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


def test_the_guide_names_every_package_and_its_exceptions():
    assert set(ALLOWED) == {"common", "ingest", "sim", "training", "serving", "evaluation", "devtools", "review", "archive"}
    assert ALLOWED["common"] == set() and ALLOWED["serving"] == {"common", "ingest"}
    assert EXCEPTIONS == {"serving/feed.py": {"sim"}, "training/cli.py": {"review"}}


def test_the_cadence_is_defined_once():
    offenders = [str(f.relative_to(ROOT)) for package in ALLOWED for f in (ROOT / package).rglob("*.py")
                 if f.name != "clock.py" and ("96 * u.min" in f.read_text() or "5760" in f.read_text())]
    assert not offenders
