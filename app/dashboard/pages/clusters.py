"""Clusters: interactive 2-D map of every mapped id coloured by cluster, label or CTR; per-cluster labels and CTR.

The map is drawn with Plotly's WebGL scatter (analysis.map_view): every point the map holds (the
fitted sample and the rows placed by the method's transform), or, when the figure would exceed
Streamlit's ``server.maxMessageSize``, a seeded uniform subset that fits, which the page states.
(Embedding Atlas' Streamlit component, 0.26.0, loads DuckDB-WASM from cdn.jsdelivr.net at run time,
so it does not work offline; see the README.)
"""

import streamlit as st

from analysis import figures
from analysis.map_view import map_figure
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
st.caption(f"K-means k={r.k} ({r.backend}) on all {r.n_ids:,} ids. "
           f"Silhouette {r.silhouette:.3f} on {r.silhouette_sample:,} ids"
           + (f"; ARI vs planted groups {r.ari:.3f}" if r.ari is not None else "") + f". Map: {m.caption()}.")
limit = float(st.get_option("server.maxMessageSize")) * 1e6 * 0.8  # headroom for the rest of the page
view = map_figure(res.map_frames[variant][method], color, title=f"{variant} · {method.upper()}", limit_bytes=limit)
st.caption(view.note())
st.plotly_chart(view.figure, key="cl_map")
st.plotly_chart(figures.cluster_ctr(r), key="cl_ctr")
st.dataframe(r.table, key="cl_table", hide_index=True)
