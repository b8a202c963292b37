"""The layout keeps its shape: each package imports only the first-party packages the architecture guide (docs/guides/architecture.md) allows."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GUIDE = ROOT / "docs" / "guides" / "architecture.md"
FIRST_PARTY = {"contract", "common", "ingest", "sim", "training", "serving", "evaluation", "devtools", "bench", "tests", "demo", "review",
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


def imported(path: Path) -> set[str]:
    """Every dotted name ``path`` imports, at any depth of the file: a module, and for ``from m import n`` both ``m``
    and ``m.n`` (``n`` may be a module of package ``m``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (at any depth of the file)."""
    return {name.split(".")[0] for name in imported(path)}


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
    assert set(ALLOWED) == {"contract", "common", "ingest", "sim", "training", "serving", "evaluation", "devtools", "review",
                            "archive"}
    assert ALLOWED["contract"] == ALLOWED["common"] == set() and ALLOWED["serving"] == {"contract", "common", "ingest"}
    assert EXCEPTIONS == {"serving/feed.py": {"sim"}, "training/cli.py": {"review"}}


def test_the_cadence_is_defined_once():
    offenders = [str(f.relative_to(ROOT)) for package in ALLOWED for f in (ROOT / package).rglob("*.py")
                 if f.name != "clock.py" and ("96 * u.min" in f.read_text() or "5760" in f.read_text())]
    assert not offenders


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """The modules of a package (dotted names) and the modules of the same package each imports, at any depth of
    the file (an import under ``if TYPE_CHECKING`` or inside a function counts: a circle is a circle to a reader)."""
    root = package_dir.parent
    modules = {}
    for f in package_dir.rglob("*.py"):
        name = ".".join(f.with_suffix("").relative_to(root).parts).removesuffix(".__init__")
        modules[name] = f
    return {name: {t for t in imported(f) if t in modules and t not in (name, package_dir.name)}
            for name, f in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of more than one module of ``graph`` (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            if group:
                out.append(sorted([v, *group]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", sorted(FIRST_PARTY - {"demo"}))
def test_no_import_circle_inside_a_package(package):
    assert circles(module_graph(ROOT / package)) == []


def test_a_circle_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (pkg / "d.py").write_text("import pkg.a\n")
    assert circles(module_graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_serving_tests_run_without_torch():
    """The serving tests' bundle is checked in (tests/make_tiny_bundle.py): they import neither torch nor the
    training code, here with both blocked from being imported at all."""
    code = (
        "import sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'training', 'onnx'):\n"
        "            raise ImportError(f'{name}: blocked (the serving tests must run without it)')\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', 'tests/test_serving.py',\n"
        "                      '-k', 'committed_frames_only or good_upload or imports_neither']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and re.search(r"\b3 passed", done.stdout), done.stdout[-3000:] + done.stderr[-2000:]


def test_the_guide_names_only_modules_that_exist():
    named = set(re.findall(r"`?((?:serving|ingest|common|contract|archive|evaluation|review|sim|training)/[\w/]*\.py)`?",
                           GUIDE.read_text()))
    assert named and not [m for m in sorted(named) if not (ROOT / m).is_file()]
