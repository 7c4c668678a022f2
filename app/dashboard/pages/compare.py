"""Compare: two versions of a table side by side (aligned cosine, CKA, kNN overlap, clusters, drift),
the release gate's decisions, and which segments' neighbourhoods changed most."""

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.compare.review import ReleaseReview, cosine_histogram, overlap_histogram, similarity_figure
from analysis.gate import latest_decisions
from app.dashboard.state import guarded, preferred, sidebar_sources, world
from lee.results import RESULT_FILE


@st.cache_resource(show_spinner="Opening the saved release review…")
def _saved_review(path: str, key: float) -> ReleaseReview:
    return ReleaseReview.load(path)


@st.cache_resource(show_spinner="Comparing the two versions (one streamed pass, neighbours, clusters, drift tests)…")
def _compare(root: str, a: str, b: str, table: str, k: int, key: tuple):
    from analysis.compare import compare_versions, open_version

    return compare_versions(open_version(a, root), open_version(b, root), table, k=k, drift_sample=500,
                            mmd_permutations=200, classifier_permutations=200)


def _review_dir(run: Path | None) -> Path | None:
    """The finished run's saved release review (the demo's ``compare/``, or the report's copy)."""
    if run is None:
        return None
    for cand in (run / "compare", run / "report" / "data" / "release"):
        if (cand / RESULT_FILE).is_file():
            return cand
    return None


def _versions(root: Path) -> dict[str, list[str]]:
    from lee.snapshot import SnapshotStore
    from lee.timeutil import time_dirname

    store = guarded(SnapshotStore, root)
    return {v: [time_dirname(t) for t in store.times(v)] for v in store.variants()}


st.title("Compare versions")
src = sidebar_sources()

st.subheader("Release gate: latest decision per variant")
decisions = guarded(latest_decisions, src.db)
if len(decisions):
    st.dataframe(decisions, key="cmp_decisions", hide_index=True)
else:
    st.caption(f"No decision recorded in {src.db}; `lee gate --candidate V --incumbent V --root R --data D --db "
               f"{src.db.name}` records one.")

saved = _review_dir(src.run)
review = guarded(_saved_review, str(saved), (saved / RESULT_FILE).stat().st_mtime) if saved is not None else None
if review is not None and review.gates:
    st.dataframe(review.gate_table(), key="cmp_gates", hide_index=True)
    gate = st.selectbox("Rules of the gate decision", list(review.gates), key="cmp_gate")
    st.dataframe(review.gates[gate].rules, key="cmp_gate_rules", hide_index=True)

st.subheader("Two versions of a table")
modes = (["Saved comparisons of the finished run"] if review is not None and review.comparisons else []) + [
    "Choose two snapshots"]
mode = st.radio("Source", modes, key="cmp_mode", horizontal=True)
if mode == "Choose two snapshots":
    versions = _versions(src.root)
    if not versions:
        st.info(f"{src.root} holds no snapshots yet.")
        st.stop()
    names = list(versions)
    cols = st.columns(2)
    va = cols[0].selectbox("Version A (earlier, incumbent)", names, index=preferred(names), key="cmp_va")
    ta = cols[0].selectbox("Snapshot of A", versions[va][::-1], index=min(1, len(versions[va]) - 1), key="cmp_ta")
    vb = cols[1].selectbox("Version B (later, candidate)", names, index=preferred(names), key="cmp_vb")
    tb = cols[1].selectbox("Snapshot of B", versions[vb][::-1], key="cmp_tb")
    cols = st.columns(2)
    table = cols[0].selectbox("Table", ["UR", "IR", "CR_user", "CR_item"], key="cmp_table")
    k = int(cols[1].number_input("k (neighbours)", min_value=1, max_value=100, value=10, key="cmp_k"))
    if (va, ta) == (vb, tb):
        st.info("Choose two different snapshots.")
        st.stop()
    c = guarded(_compare, str(src.root), f"{va}@{ta}", f"{vb}@{tb}", table, k, tuple(sorted(versions.items())))
else:
    assert review is not None
    st.plotly_chart(similarity_figure(review), key="cmp_similarity")
    st.dataframe(review.comparison_table(), key="cmp_table_all", hide_index=True)
    name = st.selectbox("Comparison", list(review.comparisons), key="cmp_name")
    c = review.comparisons[name]

s = c.summary()
m = st.columns(5)
m[0].metric("shared ids", f"{s['shared_ids']:,}", help=f"{s['only_a']:,} only in A, {s['only_b']:,} only in B")
m[1].metric("raw cosine", "–" if pd.isna(s["raw_cosine_mean"]) else f"{s['raw_cosine_mean']:.3f}")
m[2].metric("aligned cosine", f"{s['aligned_cosine_mean']:.3f}")
m[3].metric("linear CKA", f"{s['cka']:.3f}")
m[4].metric(f"kNN overlap@{s['k']}", f"{s['knn_overlap']:.3f}")
st.dataframe(c.measures(), key="cmp_measures", hide_index=True)
st.caption(f"Alignment: {s['alignment']}. Neighbours: {s['knn_method']}. Drift tests in the {s['drift_space']} "
           f"space on {s['drift_sample_a']:,} / {s['drift_sample_b']:,} sampled vectors.")
for note in s["warnings"] + s["notes"]:
    st.info(note)
cols = st.columns(2)
with cols[0]:
    st.plotly_chart(cosine_histogram(c), key="cmp_cos_hist")
with cols[1]:
    st.plotly_chart(overlap_histogram(c), key="cmp_knn_hist")

st.subheader("Whose neighbourhood changed most")
ds = world(src)
attrs = ds.attributes(c.kind.entity)
if attrs is None or not c.knn_rows.size:
    st.info(f"The dataset has no {c.kind.entity}s table to break the change down by.")
    st.stop()
id_col = ds.user_col if c.kind.entity == "user" else ds.item_col
attrs = attrs.rename(columns={id_col: f"{c.kind.entity}_id"})
choices = [col for col in attrs.columns if col not in ("user_id", "item_id")]
by = st.selectbox("Break down by", choices, index=choices.index("activity_level") if "activity_level" in choices
                  else 0, key="cmp_by")
numeric = attrs[by].dtype.kind in "if" and attrs[by].nunique() > 20
st.dataframe(guarded(c.by_attribute, attrs, by, bins=5 if numeric else None), key="cmp_by_table", hide_index=True)
