"""User-segment GMV lift from the world's planted A/B exposure log."""

import streamlit as st

from analysis import figures
from app.dashboard.state import segments, sidebar_sources

st.title("User segments: GMV lift")
src = sidebar_sources()
c = st.columns(4)
by = c[0].selectbox("Split by", ["quadrant", "activity_level"], key="seg_by")
home_col = c[1].selectbox("Home window", ["home_ad_actions_10d", "home_ad_actions_7d", "home_ad_actions_30d"],
                          key="seg_home")
other_col = c[2].selectbox("Other-scenario window", ["other_ad_actions_60d", "other_ad_actions_30d",
                                                      "other_ad_actions_90d"], key="seg_other")
threshold = c[3].number_input("Out-of-domain above", 0, 1000, 10, key="seg_threshold")
r = segments(src, by, home_col, other_col, int(threshold))
st.plotly_chart(figures.segment_lift(r), key="seg_fig")
st.dataframe(r.table, key="seg_table", hide_index=True)
st.caption(f"{r.interval_method}. {r.p_value_method}.")
