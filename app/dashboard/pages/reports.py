"""Reports: the same self-contained HTML report as `lee report`, as a download."""

import json

import streamlit as st

from analysis.report import build_report
from app.dashboard.state import lee_result, sidebar_sources, suite
from lee.results import plain

st.title("Reports")
src = sidebar_sources()
res = suite(src)
saved = src.run / "report" / "report.html" if src.run is not None else None
if saved is not None and saved.is_file():
    html = saved.read_text(encoding="utf-8")
    st.caption(f"The report written with the finished run: {saved}")
else:
    html = build_report(res, lee=lee_result(src), meta={"world": str(src.world), "snapshots": str(src.root)})
st.download_button("Download the HTML report", html, file_name="lee-report.html", mime="text/html", key="rep_html")
st.download_button("Download the numbers (JSON)", json.dumps(plain(res.summary()), indent=2),
                   file_name="lee-summary.json", mime="application/json", key="rep_json")
st.caption(f"{len(html) / 1e6:.1f} MB, opens offline (Plotly's JavaScript is inside). "
           "`lee report --world W --root R --out DIR` writes it with JSON and CSV of every table.")
