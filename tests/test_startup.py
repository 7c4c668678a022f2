"""Start-up cost of the ``lee`` command: heavy libraries are imported only by the commands that use them.

Each check runs a whole ``python`` process (as a user's shell would) and lists the heavy modules
present in ``sys.modules`` when the command has finished; the static argparse choices of
``app/cli/choices.py`` are checked against the enums they mirror.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import choices

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "faiss", "umap", "openTSNE", "streamlit", "plotly", "scipy", "sklearn", "numba",
         "analysis.importance", "lee.evaluator.models")

_PROBE = """
import json, sys
from app.cli.main import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
print("@@" + json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _run(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv, heavy=HEAVY)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
    assert line, out.stdout + out.stderr
    return json.loads(line[-1][2:])


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["analyze", "--help"],
    ["analyze", "clusters", "--help"],
    ["evaluate", "--help"],
    ["upstream", "train", "--help"],
])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    got = _run(argv)
    assert got["code"] == 0
    assert got["heavy"] == [], f"lee {' '.join(argv)} imported {got['heavy']}"


def test_snapshots_validate_imports_no_heavy_library() -> None:
    got = _run(["snapshots", "validate", str(REPO / "fixtures/tiny/snapshots"), "--quiet"])
    assert got["code"] == 0
    assert got["heavy"] == [], f"lee snapshots validate imported {got['heavy']}"


def test_static_choices_match_the_enums() -> None:
    from analysis.clusters import KMeansBackend
    from analysis.importance import MaskingMode
    from analysis.maps import MapMethod
    from lee.data.importers import FORMATS
    from lee.device import Device
    from lee.evaluator.inject import Usage
    from lee.evaluator.models import FUSIONS
    from lee.world.config import SCALES

    assert choices.DEVICES == tuple(d.value for d in Device)
    assert choices.USAGES == tuple(u.value for u in Usage)
    assert choices.FUSIONS == tuple(f.value for f in FUSIONS)
    assert choices.MASKING_MODES == tuple(m.value for m in MaskingMode)
    assert choices.KMEANS_BACKENDS == tuple(b.value for b in KMeansBackend)
    assert choices.MAP_METHODS == tuple(m.value for m in MapMethod)
    assert choices.SCALES == tuple(sorted(SCALES))
    assert choices.DATA_FORMATS == tuple(FORMATS)
