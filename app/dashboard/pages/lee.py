"""LEE: ranked variants with intervals, per-window AUC, the layer sweep, and new evaluations."""


import streamlit as st

from analysis import figures
from app.dashboard.state import guarded, lee_result, sidebar_sources, suite
from lee.config import enum_values
from lee.device import Device
from lee.engine import usable_cpus
from lee.evaluator.compare import EvalConfig
from lee.evaluator.inject import Usage
from lee.evaluator.models import FusionMode
from lee.jobs.config import JobConfig, JobEval, JobSpec, StreamSpec
from lee.jobs.run import run_job

st.title("LEE: representations against the baseline")
src = sidebar_sources()
lee = lee_result(src)
if lee is None or lee.empty:
    st.info(f"No LEE results in {src.db} yet: start an evaluation below.")
else:
    st.plotly_chart(figures.lee_ranking(lee.ranking), key="lee_ranking")
    cols = ["variant", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high", "rela_impr",
            "verdict", "verdict_holm", "p_holm", "family_size", "event_time"]
    st.dataframe(lee.ranking[[c for c in cols if c in lee.ranking.columns]], key="lee_table", hide_index=True)
    if lee.summary().get("multiplicity"):
        st.caption(lee.summary()["multiplicity"])
    if len(lee.windows):
        st.plotly_chart(figures.window_auc(lee.windows), key="lee_windows")
    st.caption(f"From {lee.source}.")
if lee is not None and lee.sweep is not None:
    st.plotly_chart(figures.layer_sweep(lee.sweep), key="lee_sweep")

st.subheader("Fidelity: LEE against full downstream training")
_fid_default = next((str(d) for d in ([src.run / "fidelity", src.run / "fidelity" / "fidelity"] if src.run else [])
                     if (d / "result.json").is_file()), "")
_fid_dir = st.text_input("A `lee fidelity --out` directory (or its fidelity/ result)", value=_fid_default,
                         key="fidelity_dir", help="rank agreement of LEE and full training, from lee fidelity")
if _fid_dir.strip():
    from pathlib import Path

    from analysis.fidelity import FidelityResult, fidelity_figure
    from app.dashboard.state import is_allowed

    _fid = Path(_fid_dir.strip()).expanduser()
    _fid = _fid / "fidelity" if (_fid / "fidelity").is_dir() else _fid
    if not is_allowed(_fid):
        st.error(f"{_fid} lies outside the directories this dashboard may read (see LEE_DASHBOARD_ROOTS).")
    else:
        fid = guarded(FidelityResult.load, _fid)
        fm = fid.metrics
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Kendall τ", f"{fm['kendall_tau']:.2f}",
                  help=f"[{fm['kendall_tau_ci'][0]:.2f}, {fm['kendall_tau_ci'][1]:.2f}]: {fm['interval']}")
        c2.metric("Spearman ρ", f"{fm['spearman_rho']:.2f}",
                  help=f"[{fm['spearman_rho_ci'][0]:.2f}, {fm['spearman_rho_ci'][1]:.2f}]")
        c3.metric("Verdicts agree", f"{fm['verdict_agreement']:.0%}")
        c4.metric("Full / LEE wall time", f"{fm['time_ratio']:.1f}×")
        st.plotly_chart(fidelity_figure(fid), key="fidelity_figure")
        st.dataframe(fid.variants[["variant", "family", "lee_delta_auc", "lee_verdict", "full_delta_auc",
                                   "full_verdict", "lee_rank", "full_rank"]], key="fidelity_table", hide_index=True)
        if len(fid.swaps):
            st.caption("Pairs the two rankings order differently")
            st.dataframe(fid.swaps, key="fidelity_swaps", hide_index=True)
        st.caption(f"{fid.data}: {fm['n_variants']} variants; notes: {'; '.join(fid.notes) or 'none'}.")

st.subheader("Start a new evaluation")
variants = suite(src).variants
with st.form("lee_form"):
    chosen = st.multiselect("Variants (latest snapshot of each)", variants, default=variants[:2], key="lee_variants")
    usages, fusions = enum_values(Usage), enum_values(FusionMode)
    default = EvalConfig()
    usage = st.selectbox("Usage", usages, index=usages.index(default.usage), key="lee_usage")
    fusion = st.selectbox("Fusion", fusions, index=fusions.index(default.fusion), key="lee_fusion")
    seeds = st.slider("Seeds", 1, 3, 1, key="lee_seeds")
    part = st.selectbox("Events the proxy learns from and is scored on", ["downstream", "upstream", "all"],
                        key="lee_part", help="the dataset's split decides which events are downstream")
    engine = st.selectbox("Engine", ["local", "ray"], key="lee_engine",
                          help="local: in the dashboard's process; ray: each unit a Ray task (a local Ray instance, "
                               "or the cluster at the address below); the dashboard stays the only writer of the store")
    address = st.text_input("Ray address (optional)", key="lee_address",
                            help="e.g. auto or ray://head:10001; empty starts a Ray instance on this machine")
    data_parallel = st.number_input("Data-parallel workers per proxy", min_value=1, max_value=64, value=1, step=1,
                                    key="lee_data_parallel",
                                    help="1: one process; N: each proxy's batches split across N workers whose "
                                         "gradients are averaged (local processes, or Ray tasks on the ray engine); "
                                         "for streams too large for one worker, not faster on a small machine")
    workers = st.number_input("Units at once (local engine)", min_value=1, max_value=usable_cpus(),
                              value=1, step=1, key="lee_workers",
                              help="1: one unit after another in the dashboard's process; N: N units at once in "
                                   "N worker processes, each with its share of the cores (same results; each holds "
                                   "its own copy of the stream). On the ray engine the cluster's CPUs decide")
    go = st.form_submit_button("Evaluate")
if go:
    if not chosen:
        st.error("Choose at least one variant.")
        st.stop()
    src.db.parent.mkdir(parents=True, exist_ok=True)
    job = JobConfig(job=JobSpec(name="dashboard", snapshots=src.root, data=src.world, results=src.db,
                                variants=tuple(chosen), latest_only=True, device=Device.CPU),
                    eval=JobEval(usages=(usage,), fusions=(fusion,), seeds=tuple(range(seeds)),
                                 data_parallel=int(data_parallel)),
                    stream=StreamSpec(part=part)).with_engine(engine, address.strip() or None)
    if engine == "local":
        job = job.with_workers(int(workers))
    bar = st.progress(0.0, text="starting…")

    def on_unit(done: int, total: int, label: str) -> None:
        bar.progress(done / max(total, 1), text=f"{done}/{total} {label}")

    report = guarded(run_job, job, progress=False, log=lambda *_: None, on_unit=on_unit)
    st.success(f"{len(report.evaluated)} evaluated, {report.skipped} already in the store.")
    for line in report.evaluated:
        st.text(line)
    st.cache_data.clear()
