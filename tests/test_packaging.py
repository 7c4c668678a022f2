"""``pip install .`` (non-editable) into a fresh venv gives a working ``lee``, offline.

The fresh venv sees the project venv's installed distributions (minus this project's own editable
install) through a ``.pth`` line, like ``--system-site-packages`` would, so nothing is downloaded:
``pip install --no-index --no-build-isolation`` must find every dependency that pyproject.toml
declares already satisfied. The package is built from a copy of the sources (so no ``build/`` or
``*.egg-info`` lands in the working tree) and everything runs from a directory outside the
repository, so the installed copy, not the source tree, is what gets imported.

Checked there: ``pip check``; every ``.py`` file of lee/, analysis/ and app/ is in the installed
package; every module imports from the installed copy (the Streamlit scripts of the dashboard and
``__main__`` modules are compiled, not run); every third-party package those modules import is a declared dependency
(a missing declaration that happens to be installed would otherwise go unnoticed); and
``lee --help`` and ``lee report --help`` work.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lee", "analysis", "app")
DIST = "lee-workbench"
# Streamlit scripts draw a page when run, so they (like every __main__.py) are compiled, not imported.
STREAMLIT_SCRIPTS = ("app.dashboard.main", "app.dashboard.pages")

# Runs inside the fresh venv, from outside the repository; prints one JSON document.
PROBE = textwrap.dedent('''
    import ast, importlib, importlib.metadata as md, json, sys
    from pathlib import Path

    packages, scripts = sys.argv[1].split(","), tuple(sys.argv[2].split(","))
    prefix = Path(sys.prefix).resolve()
    report = {"files": [], "imported": [], "compiled": [], "outside": [], "errors": {}, "third_party": {}}
    for name in packages:
        root = Path(importlib.import_module(name).__path__[0])
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent)
            report["files"].append(str(rel))
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            text = path.read_text(encoding="utf-8")
            if module.startswith(scripts) or module.endswith(".__main__"):  # running them is not importing them
                compile(text, str(path), "exec")
                report["compiled"].append(module)
            else:
                try:
                    loaded = importlib.import_module(module)
                except Exception as exc:  # every failure is reported, not just the first
                    report["errors"][module] = f"{type(exc).__name__}: {exc}"
                else:
                    report["imported"].append(module)
                    if not Path(loaded.__file__).resolve().is_relative_to(prefix):
                        report["outside"].append(f"{module}: {loaded.__file__}")
            for node in ast.walk(ast.parse(text)):
                tops = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for top in (t.split(".")[0] for t in tops):
                    if top not in sys.stdlib_module_names and top not in packages:
                        report["third_party"].setdefault(top, str(rel))
    owners = md.packages_distributions()
    report["owners"] = {top: owners.get(top, []) for top in report["third_party"]}
    report["requires"] = md.requires("lee-workbench") or []
    print(json.dumps(report))
''')


def _dependency_view(target: Path) -> Path:
    """Symlinks to every entry of this venv's site-packages except this project's own install."""
    site = Path(sysconfig.get_paths()["purelib"])
    own: set[str] = set()
    try:
        own = {Path(str(f)).parts[0] for f in importlib.metadata.distribution(DIST).files or []}
    except importlib.metadata.PackageNotFoundError:
        pass
    target.mkdir()
    for entry in site.iterdir():
        if entry.name in own or entry.name.endswith(".pth") or entry.name == "__pycache__":
            continue
        (target / entry.name).symlink_to(entry)
    return target


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv, a working directory outside the repository, environment) with the package installed."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in PACKAGES:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "_project_dependencies.pth").write_text(f"{_dependency_view(tmp / 'deps')}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_INDEX="1")
    work = tmp / "elsewhere"
    work.mkdir()
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--quiet",
          str(src)], cwd=work, env=env)
    return venv, work, env


def test_pip_check_passes(installed):
    venv, work, env = installed
    _run([str(venv / "bin" / "python"), "-m", "pip", "check"], cwd=work, env=env)


def test_installed_copy_holds_and_imports_every_module_and_declares_its_imports(installed):
    venv, work, env = installed
    probe = work / "probe.py"
    probe.write_text(PROBE)
    proc = _run([str(venv / "bin" / "python"), str(probe), ",".join(PACKAGES), ",".join(STREAMLIT_SCRIPTS)],
                cwd=work, env=env)
    report = json.loads(proc.stdout)

    source = sorted(str(p.relative_to(REPO)) for name in PACKAGES for p in (REPO / name).rglob("*.py")
                    if "__pycache__" not in p.parts)
    assert sorted(report["files"]) == source, "modules missing from (or extra in) the installed package"
    assert report["errors"] == {}, "modules that fail to import from the installed copy"
    assert report["outside"] == [], "modules imported from outside the fresh venv (the source tree?)"
    assert len(report["imported"]) > 30 and report["compiled"], report

    declared = {canonicalize_name(Requirement(r).name) for r in report["requires"]}
    undeclared = {top: (report["third_party"][top], report["owners"][top]) for top in report["third_party"]
                  if not {canonicalize_name(d) for d in report["owners"][top]} & declared}
    assert undeclared == {}, "third-party imports whose distribution pyproject.toml does not declare " \
                             "(module: (first file, distributions that provide it))"


def test_lee_help_and_report_help_run_from_the_installed_copy(installed):
    venv, work, env = installed
    lee = str(venv / "bin" / "lee")
    out = _run([lee, "--help"], cwd=work, env=env).stdout
    assert out.startswith("usage: lee") and "report" in out and "casestudy" in out
    out = _run([lee, "report", "--help"], cwd=work, env=env).stdout
    assert out.startswith("usage: lee report") and "--world" in out and "--root" in out
    where = _run([str(venv / "bin" / "python"), "-c", "import app.cli.main as m; print(m.__file__)"],
                 cwd=work, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
