"""The report of a sweep, made from results.jsonl alone: report.md and PNG plots.

- who made it: every distinct command, commit, backend, trials at once x threads, dates and
  machine found in the records;
- per suite and table group: mean and 95% t-interval over seeds of success, recovered share,
  frames, wall time and peak memory, then every other metric the trials reported;
- ``severity.png``: success against the real domain's severity, mean and 95% band over seeds,
  for each trial that evaluated several severities;
- ``curves.png``: learning curves against wall time (teacher, pixel-PPO baseline, and the
  student's point) for each trial that recorded curves;
- the search ranking (``--search``) and any failed trials.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from simtoreal.runs import atomic_write_bytes

REPORT_FILE, SEVERITY_PNG, CURVES_PNG = "report.md", "severity.png", "curves.png"
#: The columns every table leads with, when the trials report them.
HEADLINE = ("success", "recovered", "frames", "wall_time_s", "peak_rss_mb")
#: Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (a table to 30, then a
    Cornish-Fisher expansion around the normal quantile, within 1e-3 beyond 30)."""
    if df < 1:
        raise ValueError("a t-interval needs 2 values or more")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over ``values`` (the interval is the mean itself for one value)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, mean, mean
    half = t_quantile(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------------------------
# report.md
# ---------------------------------------------------------------------------------------------


def render(
    out: str | Path, records: list[dict], failures: list[dict] = (), notes: list[str] = ()
) -> Path:
    """Write report.md (and the plots it shows) into ``out``; return the report's path."""
    out = Path(out)
    done = [r for r in records if r.get("status") == "ok"]
    lines = header(records) + [f"- note: {n}" for n in notes] + [""]
    for suite, groups in grouped(done).items():
        lines += suite_section(suite, groups)
    lines += search_section([r for r in records if r.get("group") == "search"])
    if plot_severity(done, out / SEVERITY_PNG):
        lines += [
            "## Success against severity (real domain)",
            "",
            "Mean over seeds with a 95% t-band; the tables' `success` is the headline severity.",
            "",
            f"![success vs severity]({SEVERITY_PNG})",
            "",
        ]
    if plot_curves(done, out / CURVES_PNG):
        lines += [
            "## Learning curves against wall time",
            "",
            "One line per seed: the teacher's validation success, the pixel-PPO baseline's "
            "success in real (evaluation time not counted) and the student's point at the "
            "teacher's plus the adapter's wall time.",
            "",
            f"![learning curves]({CURVES_PNG})",
            "",
        ]
    lines += failure_section(failures, {r["trial_id"] for r in records})
    atomic_write_bytes(out / REPORT_FILE, "\n".join(lines).encode())
    return out / REPORT_FILE


def header(records: list[dict]) -> list[str]:
    """Title and one line per distinct invocation that produced the records."""
    suites = list(dict.fromkeys(r["suite"] for r in records))
    budgets = sorted({r["budget"] for r in records})
    lines = [
        f"# Benchmark report: {', '.join(suites) or 'no trials yet'} "
        f"(budget {', '.join(budgets) or '-'})",
        "",
        f"{len(records)} trial record(s) in results.jsonl. Intervals are 95% t-intervals "
        "over seeds (n = seeds); one seed gives no interval.",
        "",
        "Produced by:",
        "",
    ]
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if "command" in r:
            runs[(r["command"], r["commit"], r["backend"], r["jobs"], r["threads"])].append(r)
    for (command, commit, backend, jobs, threads), rs in runs.items():
        m = rs[0]["machine"]
        loads = [x["machine"]["load_average_1m"] for x in rs]
        dates = sorted(x["started"] for x in rs)
        lines.append(
            f"- `{command}` at commit `{commit}`: {len(rs)} trial(s), backend {backend}, "
            f"{jobs} trial(s) at once x {threads} thread(s); {dates[0]} to {dates[-1]}; "
            f"{m['cpu_model']} ({m['cores_usable']} usable of {m['cpu_count']} cores) on "
            f"{m.get('hostname', '?')}, torch {rs[0]['versions'].get('torch', '?')}; load "
            f"average at trial starts {min(loads)}-{max(loads)}"
        )
    return lines


def grouped(records: list[dict]) -> dict[str, dict[str, dict[str, list[dict]]]]:
    """``{suite: {group: {trial name: [records, one per seed]}}}`` in first-seen order."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        if r["group"] != "search":
            out[r["suite"]][r["group"]][r["name"]].append(r)
    return out


def suite_section(suite: str, groups: dict[str, dict[str, list[dict]]]) -> list[str]:
    from simtoreal.bench.suites import SUITES

    lines = [f"## Suite `{suite}`", ""]
    if suite in SUITES:
        lines += [SUITES[suite].description, ""]
    for group, trials in groups.items():
        names = metric_names(trials)
        head = [m for m in HEADLINE if m in names]
        rest = [m for m in names if m not in HEADLINE]
        lines += [f"### {group}", ""]
        for columns in (head, rest):
            if columns:
                lines += metric_table(trials, columns) + [""]
    return lines


def metric_names(trials: dict[str, list[dict]]) -> list[str]:
    names: dict[str, None] = {}
    for rs in trials.values():
        for r in rs:
            names.update(dict.fromkeys(r["summary"].get("metrics", {})))
    return list(names)


def metric_table(trials: dict[str, list[dict]], columns: list[str]) -> list[str]:
    """Rows: trials; columns: mean [95% interval] of each metric over the trial's seeds."""
    lines = ["| trial | seeds | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, rs in trials.items():
        cells = []
        for c in columns:
            values = [
                r["summary"]["metrics"][c]
                for r in rs
                if isinstance(r["summary"]["metrics"].get(c), int | float)
            ]
            cells.append(cell(values))
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean, low, high = mean_ci(values)
    if len(values) == 1:
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.3f}"


def search_section(records: list[dict]) -> list[str]:
    """The samples of a --search, best first by the suite's objective (stopped ones last)."""
    if not records:
        return []
    from simtoreal.bench.suites import SUITES

    def score(r: dict) -> float:
        suite = SUITES.get(r["suite"])
        key = suite.search.objective if suite and suite.search else "success"
        return r["summary"].get("metrics", {}).get(key, -math.inf)

    lines = [
        "## Search (Ray Tune, ASHA)",
        "",
        "| sample | seed | status | objective | last progress |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(records, key=score, reverse=True):
        progress = r["summary"].get("progress", {})
        shown = ", ".join(
            f"{k}={fmt(v)}"
            for k, v in progress.items()
            if k in ("success_rate", "loss", "training_iteration")
        )
        s = score(r)
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['status']} | "
            f"{'-' if s == -math.inf else fmt(s)} | {shown or '-'} |"
        )
    return [*lines, ""]


def failure_section(failures: list[dict], finished: set[str]) -> list[str]:
    """Trials that failed and have not finished since (a rerun of the sweep retries them)."""
    still = {f["trial_id"]: f for f in failures if f["trial_id"] not in finished}
    if not still:
        return []
    lines = ["## Failed trials (rerun the same command to retry them)", ""]
    lines += [f"- `{tid}`: {f['error']}" for tid, f in still.items()]
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_severity(records: list[dict], path: Path) -> bool:
    """Success vs severity with 95% bands over seeds, one line per trial; False if none."""
    by_trial: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if len(r["summary"].get("severity", {})) > 1:
            by_trial[f"{r['suite']}: {r['name']}"].append(r["summary"]["severity"])
    if not by_trial:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, runs in by_trial.items():
        levels = sorted(set.intersection(*(set(s) for s in runs)), key=float)
        stats = [mean_ci([s[k] for s in runs]) for k in levels]
        x = [float(k) for k in levels]
        line = ax.plot(x, [m for m, _, _ in stats], marker="o", label=f"{name} (n={len(runs)})")
        ax.fill_between(
            x,
            [lo for _, lo, _ in stats],
            [hi for _, _, hi in stats],
            color=line[0].get_color(),
            alpha=0.2,
        )
    ax.set(xlabel="severity of the real domain", ylabel="student success", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def plot_curves(records: list[dict], path: Path) -> bool:
    """One panel per trial with curves: every curve of every seed against wall time."""
    by_trial: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r["summary"].get("curves"):
            by_trial[f"{r['suite']}: {r['name']}"].append(r)
    if not by_trial:
        return False
    plt = _pyplot()
    cols = min(3, len(by_trial))
    rows = math.ceil(len(by_trial) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colours: dict[str, Any] = {}
    for ax, (name, rs) in zip(axes.flat, by_trial.items(), strict=False):
        _curve_panel(ax, name, rs, colours)
    for ax in list(axes.flat)[len(by_trial) :]:
        ax.set_visible(False)
    fig.tight_layout()
    _save(fig, path)
    return True


def _curve_panel(ax, name: str, records: list[dict], colours: dict[str, Any]) -> None:
    """Every curve of every seed of one trial; ``colours`` (label -> colour) is shared by the
    panels, so a teacher is the same colour everywhere."""
    for r in records:
        for c in r["summary"]["curves"]:
            colour = colours.setdefault(c["label"], f"C{len(colours)}")
            label = c["label"] if r is records[0] else None
            style = {"marker": "*", "markersize": 10, "ls": "none"} if len(c["x"]) == 1 else {}
            ax.plot(c["x"], c["y"], color=colour, lw=1, label=label, **style)
            ax.set(xlabel=c["x_label"], ylabel=c["y_label"])
    ax.set_title(f"{name} ({len(records)} seed(s))", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
