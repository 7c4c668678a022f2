"""Volatility: cosine of each id to the previous snapshot; CDF across variants; series; by attribute."""

import streamlit as st

from analysis import figures
from app.dashboard.state import guarded, preferred, sidebar_sources, suite, world

st.title("Volatility")
src = sidebar_sources()
res = suite(src)
if not res.volatility:
    st.info("No variant has two snapshots to compare.")
    st.stop()
names = list(res.volatility)
variant = st.selectbox("Variant", names, index=preferred(names), key="vol_variant")
table = st.selectbox("Table", list(res.volatility[variant]), key="vol_table")
r = res.volatility[variant][table]
s = r.summary()
c = st.columns(4)
c[0].metric("ids compared", f"{s['n_shared']:,}")
c[1].metric("cosine > 0.99", f"{s['share_above_0.99']:.1%}")
c[2].metric("cosine > 0.95", f"{s['share_above_0.95']:.1%}")
c[3].metric("new / lost ids", f"{s['n_new']:,} / {s['n_lost']:,}")
st.plotly_chart(figures.volatility_histogram(r), key="vol_hist")
same = {v: by[table] for v, by in res.volatility.items() if table in by}
st.plotly_chart(figures.volatility_cdf(same), key="vol_cdf")
st.plotly_chart(figures.volatility_series({v: by[table] for v, by in res.series.items() if table in by}),
                key="vol_series")
ds = world(src)
attrs = ds.attributes(r.kind.entity)
if attrs is None:
    st.info(f"The dataset has no {r.kind.entity}s table to break volatility down by.")
    st.stop()
id_col = ds.user_col if r.kind.entity == "user" else ds.item_col
attrs = attrs.rename(columns={id_col: f"{r.kind.entity}_id"})
choices = [c for c in attrs.columns if c not in ("user_id", "item_id")]
by = st.selectbox("Break down by", choices, index=choices.index("activity_level") if "activity_level" in choices else 0,
                  key="vol_by")
numeric = attrs[by].dtype.kind in "if" and attrs[by].nunique() > 20
st.dataframe(guarded(r.by_attribute, attrs, by, bins=5 if numeric else None), key="vol_by_table", hide_index=True)
