"""The exported report: one self-contained HTML file plus JSON and CSV of every number it shows.

The HTML embeds Plotly's JavaScript once (nothing is fetched from a CDN, so it opens offline) and
draws every figure from the same result objects the dashboard shows (:mod:`analysis.figures`).
Tables are rendered with HTML escaping and figure texts go through ``figures.safe``: an id or
label such as ``<script>alert(1)</script>`` is displayed as text, never run.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from analysis import figures
from analysis.compare.review import ReleaseReview, cosine_histogram, similarity_figure
from analysis.gains import GainsResult, gains_figure
from analysis.lee_results import LeeComparison
from analysis.suite import SuiteResult
from lee.fileio import atomic_dir, atomic_write_text, check_output_target

if TYPE_CHECKING:
    from analysis.fidelity import FidelityResult

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:0 24px;
color:#222}
h1{margin-top:24px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:40px}
table.data{border-collapse:collapse;font-size:13px;margin:8px 0 16px}
table.data td,table.data th{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.data th{background:#f5f5f5} .note{color:#666;font-size:13px} nav a{margin-right:12px}
.flag{color:#b00} .ok{color:#070}
"""


def _table(frame: pd.DataFrame, columns: list[str] | None = None, max_rows: int = 60) -> str:
    f = frame[[c for c in columns if c in frame.columns]] if columns else frame
    more = f"<p class='note'>{len(f) - max_rows} more rows in the CSV.</p>" if len(f) > max_rows else ""
    return f.head(max_rows).to_html(index=False, escape=True, classes="data", border=0, na_rep="–",
                                    float_format=lambda v: f"{v:.4g}") + more


def _figure(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _not_run(skipped: list[str], analysis: str) -> str:
    """The suite's sentences saying why ``analysis`` did not run on a variant, as a note for its section
    (they stay in the report's Notes too)."""
    says = [x for x in skipped if x.startswith(f"{analysis} ")]
    return "".join(f"<p class='note flag'>{html.escape(x)}</p>" for x in says)


def multiplicity_note(m: dict[str, Any], level: float) -> str:
    """One sentence stating a segment table's multiplicity control (``Adjusted.describe()``)."""
    if not m:
        return ""
    return (f"{m['method_text']} over a family of {m['family_size']} tested segment(s) at alpha {m['alpha']:g}; "
            f"significant = adjusted p &lt; alpha ({m['significant']} segment(s)). ci_low/ci_high: unadjusted "
            f"{level:.0%} intervals; ci_low_adj/ci_high_adj: {html.escape(m['interval_kind'])} at "
            f"{m['interval_level']:.2%}.")


def gains_section(g: GainsResult) -> str:
    """The report section of a who-gains result: figure, segment table and how to read it."""
    e = html.escape
    m = g.multiplicity.get("auc", {})
    lee = g.lee_overall
    head = (f"<p class='note'>{e(g.variant)} ({e(g.usage)}, {e(g.fusion)}) against the baseline on "
            f"{g.test_events:,} held-out events, seeds {', '.join(map(str, g.seeds))}, split by the {e(g.entity)} "
            f"attribute {e(g.by)}{' (quantile bins)' if g.binned else ''}; segments below {g.min_users} users or "
            f"{g.min_positives} positives are pooled into (other).")
    if lee:
        head += f" LEE overall: ΔAUC {lee['delta_auc']:+.4f} [{lee['ci_low']:+.4f}, {lee['ci_high']:+.4f}]."
    head += "</p>"
    cols = ["segment", "users", "events", "positives", "auc_baseline", "delta_auc", "ci_low", "ci_high", "ci_low_adj",
            "ci_high_adj", "p_value", "p_adjusted", "significant", "delta_logloss", "logloss_p_adjusted",
            "value_delta_auc", "value_p_adjusted", "contribution", "share_of_lift", "note"]
    notes = "".join(f"<li>{e(x)}</li>" for x in g.notes)
    return (head + _figure(gains_figure(g)) + _table(g.table, cols)
            + f"<p class='note'>{multiplicity_note(m, g.level)} {e(g.interval_method)}. "
            f"share_of_lift: {e(g.share_definition)}.</p>" + (f"<ul class='note'>{notes}</ul>" if notes else ""))


def release_sections(review: ReleaseReview | None) -> list[tuple[str, str, str]]:
    """The report's lead when there is a release review: the gate's decisions with every rule's measure,
    threshold and outcome, then the version comparisons — as (anchor, heading, HTML body)."""
    if review is None:
        return []
    e = html.escape
    out = []
    if review.gates:
        body = _table(review.gate_table())
        for name, g in review.gates.items():
            body += f"<h3>{e(name)}: {e(str(g.decision))}</h3>" + _table(g.rules)
        out.append(("gate", "Release gate: ship, hold or roll back", body))
    if review.comparisons:
        body = _figure(similarity_figure(review)) + _table(review.comparison_table())
        for name, c in review.comparisons.items():
            body += (f"<h3>{e(name)}</h3><p class='note'>{e(c.alignment)}; neighbours: {e(c.knn_method)}; "
                     f"drift tests in the {e(c.drift_space)} space.</p>" + _figure(cosine_histogram(c))
                     + _table(c.measures()))
        out.append(("compare", "Version comparisons (rotation-invariant similarity, neighbours, drift)", body))
    return out


def fidelity_section(f: FidelityResult) -> str:
    """LEE against full downstream training: the figures, the scatter, the per-variant pairs and swaps."""
    from analysis.fidelity import fidelity_figure

    e = html.escape
    m = f.metrics
    lo, hi = m["kendall_tau_ci"]
    rlo, rhi = m["spearman_rho_ci"]
    body = (f"<p>Kendall τ {m['kendall_tau']:.3f} [{lo:.3f}, {hi:.3f}], Spearman ρ {m['spearman_rho']:.3f} "
            f"[{rlo:.3f}, {rhi:.3f}] over {m['n_variants']} variants; verdicts agree on "
            f"{m['verdict_agreement']:.0%} (Cohen's κ {m['cohen_kappa']:.2f}); full training took "
            f"{m['time_ratio']:.1f}× LEE's wall time ({m['full_seconds']:.0f} s vs {m['lee_seconds']:.0f} s).</p>"
            f"<p class='note'>Intervals: {e(m['interval'])}. LEE's ΔAUC: {e(m['lee_delta'])}; full training's: "
            f"{e(m['full_delta'])}. Data: {e(f.data)}.</p>")
    body += _figure(fidelity_figure(f)) + _table(f.variants, [
        "variant", "family", "lee_delta_auc", "lee_ci_low", "lee_ci_high", "lee_verdict", "full_delta_auc",
        "full_ci_low", "full_ci_high", "full_verdict", "lee_rank", "full_rank", "full_epochs"])
    if len(f.swaps):
        body += "<h3>Pairs the two rankings order differently</h3>" + _table(f.swaps)
    if f.notes:
        body += "<ul>" + "".join(f"<li>{e(x)}</li>" for x in f.notes) + "</ul>"
    return body


def build_report(suite: SuiteResult, *, lee: LeeComparison | None = None, review: ReleaseReview | None = None,
                 title: str = "LEE Workbench report", meta: dict[str, Any] | None = None,
                 gains: GainsResult | None = None, fidelity: FidelityResult | None = None) -> str:
    """The report as one HTML string (Plotly's JavaScript included)."""
    e = html.escape
    parts: list[str] = []
    sections: list[tuple[str, str]] = []

    def section(anchor: str, heading: str, body: str) -> None:
        sections.append((anchor, heading))
        parts.append(f"<h2 id='{anchor}'>{e(heading)}</h2>{body}")

    # --- the release gate's decisions lead, then the version comparisons
    for anchor, heading, body in release_sections(review):
        section(anchor, heading, body)

    # --- LEE
    lee_table = lee.ranking if lee is not None else None
    lee_windows = lee.windows if lee is not None else None
    sweep = lee.sweep if lee is not None else None
    has_sweep = sweep is not None and len(sweep) > 0
    if (lee_table is not None and len(lee_table)) or has_sweep:
        body = ""
        if lee_table is not None and len(lee_table):
            body += _figure(figures.lee_ranking(lee_table)) + _table(
                lee_table, ["variant", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high",
                            "rela_impr", "coverage_events", "verdict"])
        if lee_windows is not None and len(lee_windows):
            body += _figure(figures.window_auc(lee_windows))
        if sweep is not None and len(sweep):
            body += _figure(figures.layer_sweep(sweep)) + _table(sweep.reset_index())
        section("lee", "LEE: variants against the baseline", body)

    # --- fidelity: does LEE rank as full downstream training would
    if fidelity is not None:
        section("fidelity", "Fidelity: LEE against full downstream training", fidelity_section(fidelity))

    # --- health
    if suite.health:
        rows = [r.summary() for r in suite.health.values()]
        summ = pd.DataFrame(rows)[["variant", "snapshots", "flagged", "latest_healthy", "rollback_target"]]
        body = _table(summ)
        for v, rep in suite.health.items():
            flagged = rep.table[~rep.table["healthy"]]
            if len(flagged):
                body += f"<h3>{e(v)}</h3>" + _figure(figures.health_timeline(rep)) + _table(
                    flagged, ["time", "table", "reasons"])
        section("health", "Snapshot health", body)

    # --- volatility
    not_run = _not_run(suite.skipped, "volatility")
    if suite.volatility or not_run:
        rows = [{"variant": v, **{k: r.summary()[k] for k in ("table", "before", "after", "n_shared", "n_new",
                                                              "n_lost", "mean_cosine", "share_above_0.99",
                                                              "share_above_0.95")}}
                for v, by in suite.volatility.items() for r in by.values()]
        ur = {v: by["UR"] for v, by in suite.volatility.items() if "UR" in by}
        body = (not_run + (_figure(figures.volatility_cdf(ur)) if ur else "")
                + (_table(pd.DataFrame(rows)) if rows else ""))
        series = {v: by["UR"] for v, by in suite.series.items() if "UR" in by}
        if series:
            body += _figure(figures.volatility_series(series))
        section("volatility", "Volatility (cosine to the previous snapshot)", body)

    # --- collapse
    if suite.collapse:
        body = ""
        for t, frame in suite.collapse.items():
            body += f"<h3>{e(t)}</h3>"
            if t in suite.spectra:
                body += _figure(figures.spectrum(suite.spectra[t], title=f"Singular-value spectrum · {t}"))
            body += _table(frame, ["variant", "rows", "dim", "effective_rank", "information_abundance",
                                   "dims_90pct_variance", "dims_99pct_variance", "collapsed"])
        section("collapse", "Dimensional collapse", body)

    # --- clusters (a variant they cannot run on, e.g. text ids against a log of integer ids, is named with why)
    not_run = _not_run(suite.skipped, "clusters")
    if suite.clusters or not_run:
        rows = [{"variant": v, "k": r.k, "ari": r.ari, "silhouette": r.silhouette, "overall_ctr": r.overall_ctr,
                 "clusters_above": int((r.table["flag"] == "above").sum()),
                 "clusters_below": int((r.table["flag"] == "below").sum())} for v, r in suite.clusters.items()]
        body = not_run + (_table(pd.DataFrame(rows)) if rows else "")
        for v, r in suite.clusters.items():
            body += f"<h3>{e(v)}</h3>"
            for method, frame in suite.map_frames.get(v, {}).items():
                m = suite.maps[v][method]
                body += _figure(figures.cluster_map(frame, "label", title=f"{v} · {method.upper()} "
                                                    f"({m.sample_size:,} of {m.n_total:,} ids)"))
            body += _figure(figures.cluster_ctr(r)) + _table(
                r.table, ["cluster", "size", "top1_label", "top1_share", "top2_label", "top2_share", "top3_label",
                          "top3_share", "ctr", "ctr_low", "ctr_high", "flag"])
        section("clusters", "Clusters", body)

    # --- importance
    not_run = _not_run(suite.skipped, "importance")
    if suite.importance or not_run:
        body = not_run
        for v, r in suite.importance.items():
            body += (f"<h3>{e(v)}</h3><p class='note'>base AUC {r.base_auc:.4f} on events {r.events[0]:,}–"
                     f"{r.events[1]:,}; {r.mode}, {r.n_repeats} repeat(s), {r.level:.0%} intervals</p>")
            body += _figure(figures.importance_bars(r)) + _table(r.table)
        section("importance", "Feature-masking importance", body)

    # --- segments
    if suite.segments is not None:
        s = suite.segments
        body = _figure(figures.segment_lift(s)) + _table(
            s.table, ["segment", "users_control", "users_treatment", "metric_per_user_control",
                      "metric_per_user_treatment", "lift", "ci_low", "ci_high", "ci_low_adj", "ci_high_adj",
                      "p_value", "p_adjusted", "significant", "note"])
        body += (f"<p class='note'>{multiplicity_note(s.multiplicity, s.level)} {e(s.interval_method)}; "
                 f"{e(s.p_value_method)}</p>")
        section("segments", "User-segment GMV lift", body)

    # --- who gains
    if gains is not None:
        section("gains", f"Who gains from {gains.variant}: ΔAUC per {gains.entity} segment of {gains.by}",
                gains_section(gains))

    if suite.skipped:
        section("notes", "Notes", "<ul>" + "".join(f"<li>{e(x)}</li>" for x in suite.skipped) + "</ul>")

    meta = {"generated": datetime.now(UTC).isoformat(timespec="seconds"), **(meta or {})}
    head = "".join(f"<b>{e(str(k))}</b>: {e(str(v))} &nbsp; " for k, v in meta.items())
    nav = "".join(f"<a href='#{a}'>{e(h)}</a>" for a, h in sections)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{e(title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head><body>"
            f"<h1>{e(title)}</h1><p class='note'>{head}</p><nav>{nav}</nav>{''.join(parts)}"
            "<p class='note'>Every number above is in data/ as JSON and CSV.</p></body></html>")


def write_report(out: str | Path, suite: SuiteResult, *, lee: LeeComparison | None = None,
                 review: ReleaseReview | None = None,
                 title: str = "LEE Workbench report", meta: dict[str, Any] | None = None,
                 gains: GainsResult | None = None, fidelity: FidelityResult | None = None) -> Path:
    """Write ``out/report.html`` and ``out/data/`` (``suite/``, ``lee/``, ``gains/``: saved results, JSON and
    CSV of every number shown); returns the HTML path. Each part is replaced whole, never half-written."""
    # a symlinked or device out, data/ or report.html is refused before anything is written; data/ is
    # built beside and replaces the old one in one rename, so no stale part of an earlier report survives
    out = check_output_target(out, directory=True)
    check_output_target(out / "report.html")
    with atomic_dir(check_output_target(out / "data", directory=True), overwrite=True) as data:
        suite.save(data / "suite")
        if lee is not None:
            lee.save(data / "lee")
        if gains is not None:
            gains.save(data / "gains")
        if review is not None:
            review.save(data / "release")
        if fidelity is not None:
            fidelity.save(data / "fidelity")
    path = out / "report.html"
    atomic_write_text(path, build_report(suite, lee=lee, title=title, meta=meta, gains=gains, review=review,
                                           fidelity=fidelity))
    return path
