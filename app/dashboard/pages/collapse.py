"""Dimensional collapse: singular-value spectra and effective rank per variant."""

import streamlit as st

from analysis import figures
from app.dashboard.state import require_snapshots, sidebar_sources, suite

st.title("Dimensional collapse")
src = sidebar_sources()
res = suite(src)
require_snapshots(res, src)
table = st.selectbox("Table", list(res.collapse), key="col_table")
st.plotly_chart(figures.spectrum(res.spectra[table], title=f"Singular-value spectrum · {table}"), key="col_fig")
st.dataframe(res.collapse[table], key="col_frame", hide_index=True)
