"""User segments: the lift of an A/B test per segment (planted log or the user's own file), and who
gains from a representation (per-segment ΔAUC of the injected proxy over the baseline, no experiment needed)."""

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from analysis import figures
from analysis.gains import DEFAULT_MIN_POSITIVES, DEFAULT_MIN_USERS, gains_figure
from analysis.segments import MIN_NONZERO_PER_ARM, MIN_USERS_PER_ARM, QUADRANT
from app.dashboard.state import (
    ROOTS_ENV,
    _root_key,
    from_saved_run,
    guarded,
    is_allowed,
    segments,
    sidebar_sources,
    suite,
    world,
)
from lee.config import enum_values
from lee.evaluator.inject import Usage

st.title("User segments: lift and who gains")
src = sidebar_sources()
if from_saved_run(src) and suite(src).segments is not None:
    r = suite(src).segments
    st.caption("Saved with the run (quadrant split of the planted A/B log).")
    st.plotly_chart(figures.segment_lift(r), key="seg_saved_fig")
    st.dataframe(r.table, key="seg_saved_table", hide_index=True)
    st.caption(f"{r.interval_method}. {r.p_value_method}.")
    st.stop()


def _adjustment_caption(m: dict[str, Any], level: float) -> str:
    if not m:
        return ""
    return (f"{m['method_text']} over {m['family_size']} tested segment(s) at alpha {m['alpha']:g}: significant = "
            f"adjusted p < alpha. ci_low/ci_high are unadjusted {level:.0%} intervals; ci_low_adj/ci_high_adj are "
            f"{m['interval_kind']} at {m['interval_level']:.2%}.")


@st.cache_data(show_spinner="Reading the log…")
def _read(data: bytes | None, path: str, name: str) -> pd.DataFrame:
    from analysis.segments import read_log

    return read_log(data, name=name) if data is not None else read_log(path)


@st.cache_data(show_spinner="Bootstrapping the lift…")
def _own_lift(log: pd.DataFrame, by: str, metric: str, arm_col: str, control: str, treatment: str, user_col: str,
              bins: int | None, min_users: int, min_nonzero: int, adjust: str):
    from analysis.segments import segment_lift

    return segment_lift(log, by=by, metric=metric, arm_col=arm_col, control=control, treatment=treatment,
                        user_col=user_col, bins=bins, min_users=min_users, min_nonzero=min_nonzero, adjust=adjust,
                        n_boot=1000)


@st.cache_resource(show_spinner="Training the baseline and the injected proxy…")
def _gains(data: str, root: str, key: tuple, variant: str, usage: str, by: str, bins: int, seeds: tuple[int, ...],
           windows: int, min_users: int, min_positives: int, adjust: str, n_boot: int):
    from analysis.gains import gains_for_snapshot
    from lee.snapshot import SnapshotStore

    return gains_for_snapshot(data, SnapshotStore(root).latest(variant), by=by, usage=usage, seeds=seeds,
                              windows=windows, bins=bins, min_users=min_users, min_positives=min_positives,
                              adjust=adjust, n_boot=n_boot, variant=variant)


@st.cache_data(show_spinner=False)
def _variants(root: str, key: tuple) -> list[str]:
    from lee.snapshot import SnapshotStore

    return SnapshotStore(root).variants()


ab_tab, gains_tab = st.tabs(["A/B lift per segment", "Who gains from a representation"])

with ab_tab:
    ds = world(src)
    planted = getattr(ds, "world", None) is not None
    options = ["The world's planted A/B log", "Your own A/B log (a file)"]
    source = st.radio("A/B log", options, index=0 if planted else 1, key="seg_source", horizontal=True)
    if source == options[0]:
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
        st.caption(f"{_adjustment_caption(r.multiplicity, r.level)} {r.interval_method}. {r.p_value_method}.")
    else:
        st.caption("One row per user: an arm column (any two arms), a metric column (clicks, revenue, GMV...) and "
                   "attribute columns to split by.")
        upload = st.file_uploader("CSV or Parquet file", type=["csv", "parquet", "pq"], key="seg_upload")
        path = st.text_input("…or a path on this machine", key="seg_path")
        if upload is None and not path.strip():
            st.info("Upload a log or give its path.")
        elif upload is None and not is_allowed(Path(path.strip())):
            st.error(f"{path.strip()}: outside the directories this dashboard may read (the repository, the paths "
                     f"it was started with, ${ROOTS_ENV}); upload the file instead")
        else:
            log = guarded(_read, upload.getvalue() if upload is not None else None, path.strip(),
                          upload.name if upload is not None else path.strip())
            cols = [str(c) for c in log.columns]
            numeric = [c for c in cols if pd.api.types.is_numeric_dtype(log[c])
                       and not pd.api.types.is_bool_dtype(log[c])]
            c = st.columns(4)
            arm_col = c[0].selectbox("Arm column", cols, index=cols.index("arm") if "arm" in cols else 0,
                                     key="seg_arm_col")
            arms = [str(a) for a in pd.unique(log[arm_col].dropna().astype(str))][:50]
            control = c[1].selectbox("Control arm", arms, index=arms.index("control") if "control" in arms else 0,
                                     key="seg_control")
            treat_opts = [a for a in arms if a != control] or arms
            treatment = c[2].selectbox("Treatment arm", treat_opts,
                                       index=treat_opts.index("treatment") if "treatment" in treat_opts else 0,
                                       key="seg_treatment")
            user_col = c[3].selectbox("User id column", cols,
                                      index=cols.index("user_id") if "user_id" in cols else 0, key="seg_user_col")
            metric_opts = [m for m in numeric if m not in (user_col, arm_col)] or numeric
            if not metric_opts:
                st.error("The log has no numeric column to use as the metric.")
                st.stop()
            from analysis.segments import available_splits

            splits = available_splits(log, arm_col=arm_col, user_col=user_col)
            split_opts = ([QUADRANT] if splits["quadrant"] else []) + [x for x in splits["columns"]
                                                                      if x in cols]
            c = st.columns(4)
            metric = c[0].selectbox("Metric", metric_opts, index=metric_opts.index("gmv") if "gmv" in metric_opts
                                    else 0, key="seg_metric")
            split_opts = [x for x in split_opts if x != metric] or split_opts
            by = c[1].selectbox("Split by", split_opts, key="seg_own_by")
            bins = c[2].number_input("Quantile bins (numeric split)", 2, 50, 5, key="seg_bins")
            adjust = c[3].selectbox("Multiplicity", ["holm", "bh"], key="seg_adjust",
                                    help="holm: family-wise error (default); bh: Benjamini-Hochberg false "
                                         "discovery rate")
            if not splits["quadrant"]:
                st.caption(splits["quadrant_message"] + ".")
            c = st.columns(2)
            min_users = c[0].number_input("Minimum users per arm (else pooled into (other))", 0, 100_000,
                                          MIN_USERS_PER_ARM, key="seg_min_users")
            min_nonzero = c[1].number_input("Minimum users with a non-zero metric per arm", 0, 100_000,
                                            MIN_NONZERO_PER_ARM, key="seg_min_nonzero")
            numeric_by = by != QUADRANT and by in numeric and log[by].nunique() > 20
            r = guarded(_own_lift, log, by, metric, arm_col, control, treatment, user_col,
                        int(bins) if numeric_by else None, int(min_users), int(min_nonzero), adjust)
            st.plotly_chart(figures.segment_lift(r), key="seg_own_fig")
            st.dataframe(r.table, key="seg_own_table", hide_index=True)
            st.caption(f"{_adjustment_caption(r.multiplicity, r.level)} {r.interval_method}. {r.p_value_method}.")

with gains_tab:
    st.caption("The baseline and the proxy with the snapshot injected, trained as LEE trains them (same seeds, "
               "paired), scored on the same held-out events and split by a user or item attribute.")
    ds = world(src)
    attrs = [f"user:{c}" for c in (ds.users.columns if ds.users is not None else []) if c != ds.user_col] + \
            [f"item:{c}" for c in (ds.items.columns if ds.items is not None else []) if c != ds.item_col]
    variants = guarded(_variants, str(src.root), _root_key(str(src.root)))
    if not attrs:
        st.info(f"{src.world} has no users or items table: there is no attribute to split by.")
    elif not variants:
        st.info(f"{src.root} holds no snapshots yet.")
    else:
        with st.form("gains_form"):
            c = st.columns(4)
            variant = c[0].selectbox("Variant (latest snapshot)", variants, key="gains_variant")
            usage = c[1].selectbox("Usage", enum_values(Usage), index=enum_values(Usage).index(Usage.UR_IR.value),
                                   key="gains_usage")
            by = c[2].selectbox("Split by", attrs, key="gains_by")
            bins = c[3].number_input("Quantile bins (numeric)", 2, 50, 4, key="gains_bins")
            c = st.columns(4)
            seeds = c[0].number_input("Seeds", 1, 10, 3, key="gains_seeds")
            windows = c[1].number_input("Windows", 2, 50, 10, key="gains_windows")
            adjust = c[2].selectbox("Multiplicity", ["holm", "bh"], key="gains_adjust")
            n_boot = c[3].number_input("Bootstrap resamples", 20, 2000, 200, key="gains_boot")
            c = st.columns(2)
            min_users = c[0].number_input("Minimum users per segment", 1, 1_000_000, DEFAULT_MIN_USERS,
                                          key="gains_min_users")
            min_pos = c[1].number_input("Minimum positives (and negatives) per segment", 1, 1_000_000,
                                        DEFAULT_MIN_POSITIVES, key="gains_min_pos")
            run = st.form_submit_button("Who gains?")
        args = (str(src.world), str(src.root), _root_key(str(src.root)), variant, usage, by, int(bins),
                tuple(range(int(seeds))), int(windows), int(min_users), int(min_pos), adjust, int(n_boot))
        if run or st.session_state.get("gains_done") == args:
            st.session_state["gains_done"] = args
            g = guarded(_gains, *args)
            st.plotly_chart(gains_figure(g), key="gains_fig")
            st.dataframe(g.table, key="gains_table", hide_index=True)
            lee = g.lee_overall
            if lee:
                st.caption(f"LEE overall: ΔAUC {lee['delta_auc']:+.4f} [{lee['ci_low']:+.4f}, {lee['ci_high']:+.4f}] "
                           f"({lee['verdict']}).")
            st.caption(f"{_adjustment_caption(g.multiplicity.get('auc', {}), g.level)} {g.interval_method}. "
                       f"share_of_lift: {g.share_definition}.")
            for note in g.notes:
                st.warning(note)
