"""Plots and the report.md of an NLP run: the layer probe and the confusion matrix."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simtoreal.runs import atomic_write_bytes

PROBE_PNG, CONFUSION_PNG, REPORT_MD = "probe.png", "confusion.png", "report.md"


def _figure_bytes(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_probe(rows: Sequence[dict[str, Any]], path: Path, title: str = "layer probe") -> None:
    """Validation accuracy (95% CI bars) against layer, one line per pooling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for pooling in dict.fromkeys(r["pooling"] for r in rows):
        part = [r for r in rows if r["pooling"] == pooling]
        x = np.array([r["layer"] for r in part])
        acc = np.array([r["accuracy"] for r in part])
        err = np.array([[a - r["ci_low"] for a, r in zip(acc, part, strict=True)],
                        [r["ci_high"] - a for a, r in zip(acc, part, strict=True)]])  # fmt: skip
        ax.errorbar(x + (0.06 if pooling == "mean" else -0.06), acc, yerr=err, marker="o",
                    capsize=3, label=pooling)  # fmt: skip
    ax.set_xlabel("hidden layer (0 = embeddings)")
    ax.set_ylabel(f"accuracy ({rows[0]['protocol']})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="pooling")
    atomic_write_bytes(path, _figure_bytes(fig))


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                   title: str = "test confusion matrix") -> None:  # fmt: skip
    """Counts with row-normalised shading (rows = true class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    atomic_write_bytes(path, _figure_bytes(fig))


def _ci(metrics: dict[str, Any], key: str) -> str:
    low, high = metrics[f"{key}_ci"]
    return f"{metrics[key]:.3f} ({low:.3f}-{high:.3f})"


def metrics_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| split | n | accuracy (95% CI) | macro recall (95% CI) | macro F1 (95% CI) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for split, m in results.items():
        lines.append(f"| {split} | {m['n']} | {_ci(m, 'accuracy')} | {_ci(m, 'macro_recall')} | "
                     f"{_ci(m, 'macro_f1')} |")  # fmt: skip
    return lines


def probe_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    poolings = list(dict.fromkeys(r["pooling"] for r in rows))
    layers = sorted({r["layer"] for r in rows})
    cell = {(r["layer"], r["pooling"]): r for r in rows}
    lines = ["| layer | " + " | ".join(f"{p} accuracy (95% CI)" for p in poolings) + " |",
             "|---|" + "---|" * len(poolings)]  # fmt: skip
    for layer in layers:
        cells = [cell.get((layer, p)) for p in poolings]
        lines.append(f"| {layer} | " + " | ".join(
            "" if c is None else f"{c['accuracy']:.3f} ({c['ci_low']:.3f}-{c['ci_high']:.3f})"
            for c in cells) + " |")  # fmt: skip
    return lines


def write_report(
    run_dir: Path, summary: dict[str, Any], probe: list[dict[str, Any]] | None
) -> None:
    """report.md: what was stacked, test and validation metrics, the probe, the plots."""
    choice = summary["choice"]
    layer = "learned mix of all layers" if choice["layer"] is None else f"layer {choice['layer']}"
    lines = [
        "# NLP stack run",
        "",
        f"- encoder: `{summary['model_path']}` ({summary['n_layers']} layers, width "
        f"{summary['width']}), {summary['training']}",
        f"- tap: {layer}, {choice['pooling']} pooling ({choice['reason']})",
        f"- data: `{summary['data']}` ({summary['layout']}); train {summary['n_train']}, "
        f"val {summary['n_val']}, test {summary['n_test']}; classes {summary['labels']}",
        f"- wall time {summary['wall_time_s']:.1f} s (encoding {summary['encode_seconds']:.1f} s "
        f"for {summary['encoded_texts']} texts, cache hits {summary['cache_hits']})",
        "",
        "## Metrics",
        "",
        *metrics_table(summary["results"]),
        "",
    ]
    if "val" in summary["results"]:
        lines += ["val chose the epoch (and with --layer/--pooling auto the tap), so its numbers "
                  "lean optimistic; test was used for nothing but this table.", ""]  # fmt: skip
    if summary["results"].get("test"):
        lines += [f"![confusion matrix]({CONFUSION_PNG})", ""]
    if probe:
        lines += ["## Layer probe", "", f"Protocol: {probe[0]['protocol']} (never the test split).",
                  "", *probe_table(probe), "", f"![layer probe]({PROBE_PNG})", ""]  # fmt: skip
    atomic_write_bytes(run_dir / REPORT_MD, "\n".join(lines).encode())
