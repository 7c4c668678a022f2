"""Overview: variants, their snapshot timeline and health flags."""

import pandas as pd
import streamlit as st

from analysis import figures
from analysis.health import flag_table
from app.dashboard.state import require_snapshots, sidebar_sources, suite

st.title("Overview")
src = sidebar_sources()
res = suite(src)
require_snapshots(res, src)
rows = [{"variant": v, **{k: r.summary()[k] for k in ("snapshots", "flagged", "latest_healthy", "rollback_target")}}
        for v, r in res.health.items()]
st.subheader("Variants")
st.dataframe(pd.DataFrame(rows), key="overview_variants", hide_index=True)
st.plotly_chart(figures.snapshot_timeline(res.health), key="overview_timeline")
flags = flag_table(res.health)
st.subheader("Health flags")
if flags.empty:
    st.success("No snapshot is flagged.")
else:
    st.dataframe(flags, key="overview_flags", hide_index=True)
for note in res.skipped:
    st.info(note)
