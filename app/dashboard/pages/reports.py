"""Reports: the same self-contained HTML report as `lee report`, as a download."""

import json

import streamlit as st

from analysis.export import plain
from analysis.report import build_report
from app.dashboard.state import lee_tables, sidebar_sources, suite, sweep

st.title("Reports")
src = sidebar_sources()
res = suite(src)
tables = lee_tables(src)
html = build_report(res, lee_table=tables[0] if tables else None, lee_windows=tables[1] if tables else None,
                    sweep=sweep(src), meta={"world": str(src.world), "snapshots": str(src.root)})
st.download_button("Download the HTML report", html, file_name="lee-report.html", mime="text/html", key="rep_html")
st.download_button("Download the numbers (JSON)", json.dumps(plain(res.summary()), indent=2),
                   file_name="lee-summary.json", mime="application/json", key="rep_json")
st.caption(f"{len(html) / 1e6:.1f} MB, opens offline (Plotly's JavaScript is inside). "
           "`lee report --world W --root R --out DIR` writes it with JSON and CSV of every table.")
