"""LEE Workbench dashboard — the entry script is only a router.

    streamlit run app/main.py -- [--world DIR] [--root SNAPSHOT_ROOT] [--db results.sqlite] [--sweep sweep.csv]

Defaults: the embedded sample (fixtures/tiny) and runs/dashboard/results.sqlite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `streamlit run` from any directory

st.set_page_config(page_title="LEE Workbench", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", default=True),
    st.Page("pages/lee.py", title="LEE"),
    st.Page("pages/volatility.py", title="Volatility"),
    st.Page("pages/importance.py", title="Importance"),
    st.Page("pages/segments.py", title="Segments"),
    st.Page("pages/clusters.py", title="Clusters"),
    st.Page("pages/collapse.py", title="Collapse"),
    st.Page("pages/compare.py", title="Compare"),
    st.Page("pages/reports.py", title="Reports"),
]
st.navigation(PAGES).run()
