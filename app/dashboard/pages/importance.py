"""Feature-masking importance of a proxy model trained with one variant injected."""

import streamlit as st

from analysis import figures
from analysis.importance import MaskingMode
from app.dashboard.state import importance, sidebar_sources, suite
from lee.config import enum_values

st.title("Feature-masking importance")
src = sidebar_sources()
res = suite(src)
if res.importance:
    st.subheader("Saved with the run")
    shown = st.selectbox("Variant", list(res.importance), key="imp_saved")
    r = res.importance[shown]
    st.caption(f"Base AUC {r.base_auc:.4f} on held-out events {r.events[0]:,}–{r.events[1]:,}; {r.mode}, "
               f"{r.n_repeats} repeat(s), {r.level:.0%} intervals (user bootstrap × repeats).")
    st.plotly_chart(figures.importance_bars(r), key="imp_saved_bars")
    st.dataframe(r.table, key="imp_saved_table", hide_index=True)
    st.subheader("Train and mask another")
variants = res.variants
c = st.columns(3)
variant = c[0].selectbox("Variant injected (UR+IR)", variants, key="imp_variant")
modes = enum_values(MaskingMode)
mode = c[1].selectbox("Masking", modes, index=modes.index(MaskingMode.PERMUTATION), key="imp_mode")
repeats = c[2].slider("Repeats (permutation)", 1, 5, 3, key="imp_repeats")
if st.button("Train and mask", key="imp_run") or st.session_state.get("imp_done") == (variant, mode, repeats):
    st.session_state["imp_done"] = (variant, mode, repeats)
    r = importance(src, variant, mode, repeats)
    st.caption(f"Base AUC {r.base_auc:.4f} on held-out events {r.events[0]:,}–{r.events[1]:,}; "
               f"{r.level:.0%} intervals (user bootstrap × repeats).")
    st.plotly_chart(figures.importance_bars(r), key="imp_bars")
    st.dataframe(r.table, key="imp_table", hide_index=True)
else:
    st.info("Training the proxy takes a few seconds on the sample data: press the button.")
