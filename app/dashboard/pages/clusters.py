"""Clusters: interactive 2-D map coloured by cluster, label or CTR; per-cluster labels and CTR."""

import streamlit as st

from analysis import figures
from analysis.maps import MapMethod
from app.dashboard.state import from_saved_run, preferred, sidebar_sources, suite

st.title("Clusters")
src = sidebar_sources()
if from_saved_run(src):  # the maps the run computed
    res = suite(src)
    method = st.radio("Map", sorted({m for by in res.maps.values() for m in by}) or ["pca"], horizontal=True,
                      key="cl_method")
else:
    method = st.radio("Map", [MapMethod.PCA.value, MapMethod.TSNE.value], horizontal=True,  # umap: too slow live
                      key="cl_method")
    res = suite(src, maps=("pca", "tsne") if method == "tsne" else ("pca",))
if not res.clusters:
    st.info("No variant has a table to cluster.")
    st.stop()
c = st.columns(2)
names = [v for v in res.clusters if method in res.maps.get(v, {})] or list(res.clusters)
variant = c[0].selectbox("Variant", names, index=preferred(names), key="cl_variant")
color = c[1].radio("Colour by", ["cluster", "label", "cluster_ctr"], horizontal=True, key="cl_color")
r = res.clusters[variant]
if method not in res.maps.get(variant, {}):
    st.info(f"No {method} map of {variant} in this run.")
    st.dataframe(r.table, key="cl_table", hide_index=True)
    st.stop()
m = res.maps[variant][method]
st.caption(f"K-means k={r.k} ({r.backend}) on all {r.n_ids:,} ids; map of a stratified sample of {m.sample_size:,}. "
           f"Silhouette {r.silhouette:.3f} on {r.silhouette_sample:,} ids"
           + (f"; ARI vs planted groups {r.ari:.3f}" if r.ari is not None else ""))
st.plotly_chart(figures.cluster_map(res.map_frames[variant][method], color, title=f"{variant} · {method.upper()}"),
                key="cl_map")
st.plotly_chart(figures.cluster_ctr(r), key="cl_ctr")
st.dataframe(r.table, key="cl_table", hide_index=True)
