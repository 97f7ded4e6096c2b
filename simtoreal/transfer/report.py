"""The transfer report: a markdown page and a plot of success against the size of the gap."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _pct(r: dict) -> str:
    lo, hi = r["success_ci"]
    return f"{r['success_rate']:.3f} [{lo:.3f}, {hi:.3f}]"


def plot_severity(summary: dict, path: Path) -> None:
    real = summary["student"]["real"]
    sev = sorted(real, key=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    rates = [real[s]["success_rate"] for s in sev]
    lo = [real[s]["success_rate"] - real[s]["success_ci"][0] for s in sev]
    hi = [real[s]["success_ci"][1] - real[s]["success_rate"] for s in sev]
    ax.errorbar(
        [float(s) for s in sev],
        rates,
        yerr=[lo, hi],
        marker="o",
        capsize=3,
        label="student (adapter + frozen head), zero-shot in real",
    )
    ax.axhline(
        summary["teacher"]["success_rate"], color="k", ls="--", lw=1, label="teacher in sim (state)"
    )
    ax.axhline(
        summary["student"]["randomized"]["success_rate"],
        color="tab:orange",
        ls=":",
        lw=1,
        label="student in randomized (training domain)",
    )
    if "baseline" in summary:
        b = summary["baseline"]
        ax.scatter(
            [b["severity"]],
            [b["same_wall_time"]["success_rate"]],
            marker="x",
            color="tab:red",
            zorder=3,
            label="PPO from pixels, same wall time",
        )
    ax.set_xlabel("real-domain severity")
    ax.set_ylabel("success rate (95% CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def robustness_lines(r: dict) -> list[str]:
    """The robustness table: every shift, its family, whether training covers it."""
    score = "n/a (training covers every family)" if r["score"] is None else f"**{r['score']:.3f}**"
    lines = [
        f"## Robustness: shifts at severity {r['severity']} of 5 on top of {r['on_top_of']}",
        "",
        f"Robustness score (recovered success averaged over the shifts of families that training "
        f"(`{r['train_domain']}`{_augment_text(r)}) does not vary: "
        f"{', '.join(r['families_uncovered'])}): {score}. Mean over all shifts: "
        f"{r.get('mean_all', float('nan')):.3f}. Worst shift: {r['worst']} "
        f"({r['shifts'][r['worst']]['recovered']:.3f}). {r['n_episodes']} test episodes per shift.",
        "",
        "| shift | family | covered by training | success [95% CI] | recovered |",
        "|---|---|---|---|---|",
    ]
    for name, x in r["shifts"].items():
        lo, hi = x["success_ci"]
        lines.append(
            f"| {name} | {x['family']} | {'yes' if x['covered_by_training'] else 'no'} | "
            f"{x['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] | {x['recovered']:.3f} |"
        )
    return [*lines, ""]


def _augment_text(r: dict) -> str:
    augment = r.get("train_augment") or []
    return f" with {', '.join(augment)} augmentation" if augment else ""


def write_report(run_dir: Path, summary: dict) -> Path:
    """Write ``report.md`` and ``success_vs_severity.png`` into ``run_dir``."""
    plot_severity(summary, run_dir / "success_vs_severity.png")
    t, s = summary["teacher"], summary["student"]
    lines = [
        "# Transfer report",
        "",
        *(f"> **Warning:** {w}\n" for w in summary.get("warnings", [])),
        f"Teacher: `{summary['teacher_dir']}`. World: "
        + ", ".join(f"{k}={v}" for k, v in summary["env"].items())
        + ".",
        "",
        "| policy | observation | success [95% CI] | mean return | mean length |",
        "|---|---|---|---|---|",
        f"| teacher | state, sim | {_pct(t)} | {t['mean_return']:.3f} | {t['mean_length']:.1f} |",
        f"| student | image, sim | {_pct(s['sim'])} | {s['sim']['mean_return']:.3f} | {s['sim']['mean_length']:.1f} |",
        f"| student | image, randomized | {_pct(s['randomized'])} | {s['randomized']['mean_return']:.3f} | {s['randomized']['mean_length']:.1f} |",
    ]
    for sev, r in sorted(s["real"].items(), key=lambda kv: float(kv[0])):
        lines.append(
            f"| student | image, real severity {sev} | {_pct(r)} | {r['mean_return']:.3f} | {r['mean_length']:.1f} |"
        )
    floor = summary["random_policy"]
    lines.append(
        f"| random actions (floor) | any | {_pct(floor)} | {floor['mean_return']:.3f} | {floor['mean_length']:.1f} |"
    )
    v = summary["validation"]
    lines += [
        "",
        f"Validation (choices only, never the headline): student in the validation world at severity "
        f"{summary['protocol']['validation']['domain'].split('@')[1]}: {_pct(v)} on validation seeds.",
    ]
    tr = summary["train"]
    lines += [
        "",
        f"Share of the teacher's success recovered zero-shot in real (default severity): "
        f"**{summary['recovered']:.3f}**.",
        "",
        f"Adapter training: {tr['frames']} rendered frames, {tr['samples']} samples, "
        f"{tr['wall_time_s']:.1f} s wall (data collection included), {tr['dagger_rounds']} DAgger rounds.",
        "",
        "Held-out pairs (seeds never used in training):",
        "",
        "| domain | latent R² | greedy action agreement |",
        "|---|---|---|",
    ]
    for name, r in summary["held_out_pairs"].items():
        lines.append(f"| {name} | {r['latent_r2']:.3f} | {r['action_agreement']:.3f} |")
    lines += [
        "",
        "Signals used: " + "; ".join(f"{k}: {v}" for k, v in summary["signals"].items()),
        "",
    ]
    if "finetune" in summary:
        f = summary["finetune"]
        lines += ["## Fine-tuning", "", *(f"- {k}: {v}" for k, v in f.items()), ""]
    if "baseline" in summary:
        b = summary["baseline"]
        lines += [
            "## Baseline: PPO from pixels in real",
            "",
            *(f"- {k}: {v}" for k, v in b.items()),
            "",
        ]
    else:
        lines += [
            "Baseline: **not run** in this job. `python -m simtoreal.transfer --baseline` adds PPO "
            "trained from pixels in real, at the same frames and the same wall time.",
            "",
        ]
    if "robustness" in summary:
        lines += robustness_lines(summary["robustness"])
    p = summary["protocol"]
    lines += [
        "Domains and seeds: "
        + "; ".join(
            f"{role}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for role, d in p.items()
        ),
        "",
    ]
    lines += ["![success vs severity](success_vs_severity.png)", ""]
    path = run_dir / "report.md"
    from simtoreal.runs import atomic_write_bytes

    atomic_write_bytes(path, "\n".join(lines).encode())
    return path
