"""Overview: the latest release-gate decision per variant, then variants, their snapshot timeline and health flags."""

import pandas as pd
import streamlit as st

from analysis import figures
from analysis.gate import latest_decisions
from analysis.health import flag_table
from app.dashboard.state import guarded, require_snapshots, sidebar_sources, suite

st.title("Overview")
src = sidebar_sources()
decisions = guarded(latest_decisions, src.db)
if len(decisions):
    st.subheader("Release gate: latest decision per variant")
    st.dataframe(decisions, key="overview_gate", hide_index=True)
else:
    st.caption(f"No release-gate decision in {src.db} yet (`lee gate ... --db {src.db.name}` records one).")
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
