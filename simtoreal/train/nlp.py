"""``python -m simtoreal.train nlp``: a text classifier stacked on a pretrained transformer.

The recipe, top to bottom: read the splits from ``--data`` and load the encoder (both checked
before anything is written), prepare the run directory, compute (or read from the cache) the
frozen features of every layer once, probe the layers if asked (or if ``--layer auto``), fit the
head on the chosen layer, optionally fine-tune the top blocks on the texts, evaluate on the test
split, save the classifier and write metrics.jsonl, summary.json and report.md.

``python -m simtoreal.train nlp --predict RUN_DIR "text" ["text" ...]`` classifies texts with a
trained run (``-`` reads one text per line from stdin).
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from simtoreal.errors import ConfigError
from simtoreal.runs import (
    append_jsonl,
    atomic_write_json,
    default_run_dir,
    marks_failure,
    prepare_run_dir,
)
from simtoreal.stacks.nlp import (
    Choice,
    NLPConfig,
    build_stack,
    load_encoder,
    num_layers,
    resolve_layer,
    tuned_blocks,
)
from simtoreal.stacks.nlp_classifier import load_classifier, save_classifier
from simtoreal.stacks.nlp_data import Splits, load_splits, stratified_split
from simtoreal.stacks.nlp_features import FeatureCache
from simtoreal.stacks.nlp_report import (
    CONFUSION_PNG,
    PROBE_PNG,
    plot_confusion,
    plot_probe,
    write_report,
)
from simtoreal.stacks.nlp_train import (
    choose,
    classification_metrics,
    fine_tune,
    fit_head,
    predict_logits,
    predict_texts,
    probe_layers,
)

PROG = "python -m simtoreal.train nlp"
METRICS_FILE, SUMMARY_FILE = "metrics.jsonl", "summary.json"


@dataclass
class NLPArgs(NLPConfig):
    """Train a text classifier: pretrained transformer -> tapped hidden layer -> MLP head; writes
    a run directory (runs/nlp-<timestamp>). To classify texts with a trained run:
    python -m simtoreal.train nlp --predict RUN_DIR "some text" ["more text" ...]"""

    data: Path | None = None
    """Labelled data: a CSV/TSV/JSONL file (split stratified 80/10/10), a directory with one
    table per split (train.tsv, dev.tsv, test.tsv), a TweetEval-style directory
    (<split>_text.txt + <split>_labels.txt, optional mapping.txt), or a saved HF DatasetDict."""
    train_split: str = "train"
    """Split of a --data directory to train on (e.g. val for TweetEval's protocol)."""
    val_split: str = "auto"
    """Validation split: auto (val/dev/validation if present, else 10% of a large training
    split, else cross-validation), none (cross-validation on the training split), or a name."""
    test_split: str = "test"
    """Split reported as the held-out result ('none': no test evaluation)."""
    text_column: str = "sentence"
    """Column of the texts in CSV/TSV/JSONL files."""
    label_column: str = "label"
    """Column of the labels in CSV/TSV/JSONL files."""
    drop_empty: bool = False
    """Drop rows with an empty text instead of stopping with an error."""
    max_train: int | None = None
    """Use a stratified subset of this many training rows (None: all)."""
    probe: bool = False
    """Train the head on every layer x pooling and report validation accuracy per layer."""
    folds: int = 5
    """Folds of the cross-validation used when there is no validation split."""
    run_dir: Path | None = None
    """Run directory; default runs/nlp-<timestamp>."""
    overwrite: bool = False
    """Replace an existing run directory (only one that holds a config.json)."""
    predict: Path | None = None
    """Classify texts with the trained run in this directory: --predict RUN_DIR TEXT [TEXT ...]
    (give - to read one text per line from stdin); no other flag is used."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_train is not None and self.max_train < 2:
            raise ConfigError(f"max_train={self.max_train}: use at least 2 rows, or omit it.")
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds}: use 2 or more.")

    def nlp_config(self) -> NLPConfig:
        names = {f.name for f in dataclasses.fields(NLPConfig)}
        return NLPConfig(**{k: v for k, v in vars(self).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("data", "run_dir", "predict"):
            out[key] = None if out[key] is None else str(out[key])
        return out


def cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``train nlp`` flags; train (or, with --predict, classify) and return the summary."""
    if argv and (argv[0] == "--predict" or argv[0].startswith("--predict=")):
        return predict_cli(argv)
    args = tyro.cli(NLPArgs, args=argv, prog=PROG)
    if args.predict is not None:
        raise ConfigError("--predict RUN_DIR must come first: --predict RUN_DIR TEXT [TEXT ...].")
    if args.data is None:
        raise ConfigError("--data PATH is required: a data file or directory (see --help).")
    return train(args)


def predict_cli(argv: list[str]) -> dict[str, Any]:
    """``--predict RUN_DIR TEXT ...``: labels and probabilities of each text."""
    if "=" in argv[0]:
        argv = ["--predict", argv[0].split("=", 1)[1], *argv[1:]]
    if len(argv) < 2:
        raise ConfigError("--predict needs a run directory: --predict RUN_DIR TEXT [TEXT ...].")
    run_dir, texts = argv[1], argv[2:]
    if texts == ["-"]:
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not texts:
        raise ConfigError(
            "no texts to classify: --predict RUN_DIR TEXT [TEXT ...] (or - for stdin)."
        )
    clf = load_classifier(run_dir)
    probs = clf.predict_proba(texts)
    return {"predictions": [{"text": t, "label": clf.labels[int(p.argmax())],
                             "probability": round(float(p.max()), 4)}
                            for t, p in zip(texts, probs, strict=True)]}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------


def read_data(args: NLPArgs) -> Splits:
    """The splits of ``--data``, with the training subset of ``--max-train`` if given."""
    splits = load_splits(args.data, train_split=args.train_split, val_split=args.val_split,
                         test_split=args.test_split, text_column=args.text_column,
                         label_column=args.label_column, seed=args.seed,
                         drop_empty=args.drop_empty)  # fmt: skip
    if args.max_train is not None and args.max_train < len(splits.train):
        share = args.max_train / len(splits.train)
        keep = stratified_split(splits.train.labels, (share, 1 - share), args.seed)[0]
        splits.train = splits.train.subset(keep)
    return splits


def train(args: NLPArgs) -> dict[str, Any]:
    """Run the recipe into ``args.run_dir`` and return the summary."""
    start = time.perf_counter()
    torch.set_num_threads(args.torch_threads)
    config = args.nlp_config()
    splits = read_data(args)  # data, model and layer are checked before the run dir exists
    encoder, tokenizer, model_path = load_encoder(config.model)
    n_layers = num_layers(encoder)
    _check_layer(config, encoder)
    run_dir = args.run_dir or default_run_dir("nlp")
    run_dir = prepare_run_dir(run_dir, overwrite=args.overwrite, config=args.to_dict())
    with marks_failure(run_dir):
        cache = FeatureCache(encoder, tokenizer, model_path, config.max_length,
                             config.batch_size, config.cache_dir)  # fmt: skip
        data = _features(cache, splits)
        probe = _probe(args, config, data, splits)
        choice = choose(config, n_layers, probe)
        stack, results, history = _fit_and_evaluate(config, choice, data, splits, encoder,
                                                    tokenizer)  # fmt: skip
        save_classifier(run_dir, stack, choice, config, splits.label_map, model_path)
        for record in history:
            append_jsonl(run_dir / METRICS_FILE, record)
        summary = _summary(args, splits, choice, results, cache, encoder, model_path, run_dir,
                           time.perf_counter() - start)  # fmt: skip
        _write_outputs(run_dir, summary, probe, splits)
    return summary


def _check_layer(config: NLPConfig, encoder: Any) -> None:
    """Refuse a layer out of range, or a top_k larger than the blocks under the tap, early."""
    if config.layer == "auto":
        return
    layer = None if config.layer == "mix" else resolve_layer(config.layer, num_layers(encoder))
    if config.top_k:
        tuned_blocks(encoder, Choice(layer, "cls"), config.top_k)


def _features(cache: FeatureCache, splits: Splits) -> dict[str, Any]:
    """Cached features ``{pooling: (N, L+1, H)}`` and labels ``(N,)`` of each present split."""
    out = {}
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        if split is not None:
            y = torch.from_numpy(splits.label_map.encode(split.labels, where=split.source))
            out[name] = (cache.get(split.texts, desc=f"encoding {name}"), y)
    return out


def _probe(args: NLPArgs, config: NLPConfig, data: dict, splits: Splits) -> list[dict] | None:
    if not (args.probe or config.layer == "auto" or config.pooling == "auto"):
        return None
    poolings = ("cls", "mean") if args.probe or config.pooling == "auto" else (config.pooling,)
    train_x, y = data["train"]
    return probe_layers(train_x, y, config, len(splits.label_map.names), val=data.get("val"),
                        folds=args.folds, poolings=poolings)  # fmt: skip


def _fit_and_evaluate(
    config: NLPConfig, choice: Choice, data: dict, splits: Splits, encoder: Any, tokenizer: Any
) -> tuple[Any, dict[str, dict], list[dict]]:
    """Fit the head on cached features (then fine-tune the top blocks if asked); metrics of the
    val and test splits; the per-epoch history."""
    n_classes = len(splits.label_map.names)
    (train_x, y), val = data["train"], data.get("val")
    val_p = None if val is None else (val[0][choice.pooling], val[1])
    fit = fit_head(train_x[choice.pooling], y, choice, config, n_classes, val=val_p)
    history = [{"phase": "head", **r} for r in fit.history]
    stack = build_stack(encoder, fit.stack, choice, config.top_k, config.encoder_lr_scale,
                        config.unfreeze_after)  # fmt: skip
    if config.top_k:
        evaluate = None if splits.val is None else (
            lambda: _text_accuracy(stack, tokenizer, splits.val.texts, val[1], config))  # fmt: skip
        ft = fine_tune(stack, tokenizer, splits.train.texts, y, config, config.finetune_epochs,
                       evaluate)  # fmt: skip
        history += [{"phase": "fine-tune", **r} for r in ft]
    results = {}
    for name in ("val", "test"):
        if name in data:
            if config.top_k:
                logits = predict_texts(stack, tokenizer, getattr(splits, name).texts, config)
            else:
                logits = predict_logits(fit.stack, data[name][0][choice.pooling])
            y_true = data[name][1].numpy()
            results[name] = classification_metrics(y_true, logits.argmax(1).numpy(), n_classes)
    return stack, results, history


def _text_accuracy(stack: Any, tokenizer: Any, texts: list[str], y: torch.Tensor,
                   config: NLPConfig) -> float:  # fmt: skip
    return float((predict_texts(stack, tokenizer, texts, config).argmax(1) == y).float().mean())


def _summary(args: NLPArgs, splits: Splits, choice: Choice, results: dict, cache: FeatureCache,
             encoder: Any, model_path: Path, run_dir: Path, wall: float) -> dict[str, Any]:  # fmt: skip
    training = ("frozen encoder (features cached)" if not args.top_k else
                f"top {args.top_k} block(s) fine-tuned at lr x {args.encoder_lr_scale} for "
                f"{args.finetune_epochs} pass(es), head first fitted on frozen features")  # fmt: skip
    return {
        "results": results,
        "choice": dataclasses.asdict(choice),
        "labels": list(splits.label_map.names),
        "training": training,
        "model_path": str(model_path),
        "n_layers": num_layers(encoder),
        "width": int(encoder.config.hidden_size),
        "data": str(args.data),
        "layout": splits.layout,
        **{f"n_{k}": len(getattr(splits, k) or []) for k in ("train", "val", "test")},
        "encode_seconds": round(cache.encode_seconds, 2),
        "encoded_texts": cache.encoded_texts,
        "cache_hits": cache.hits,
        "wall_time_s": round(wall, 2),
        "seed": args.seed,
        "run_dir": str(run_dir),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": _transformers_version(),
        },  # fmt: skip
    }


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _write_outputs(run_dir: Path, summary: dict, probe: list[dict] | None, splits: Splits) -> None:
    if probe:
        plot_probe(probe, run_dir / PROBE_PNG)
        atomic_write_json(run_dir / "probe.json", probe)
    if "test" in summary["results"]:
        plot_confusion(summary["results"]["test"]["confusion"], splits.label_map.names,
                       run_dir / CONFUSION_PNG)  # fmt: skip
    write_report(run_dir, summary, probe)
    atomic_write_json(run_dir / SUMMARY_FILE, summary)


def print_summary(summary: dict[str, Any]) -> None:
    """Predictions one per line; or the headline metrics of a training run."""
    if "predictions" in summary:
        for p in summary["predictions"]:
            print(f"{p['label']}\t{p['probability']:.3f}\t{p['text']}")
        return
    from rich.console import Console
    from rich.table import Table

    choice = summary["choice"]
    layer = "mix" if choice["layer"] is None else choice["layer"]
    table = Table(title=f"nlp: layer {layer}, {choice['pooling']} pooling", show_header=False)
    for split, m in summary["results"].items():
        low, high = m["accuracy_ci"]
        table.add_row(
            f"{split} accuracy", f"{m['accuracy']:.3f}  (95% CI {low:.3f}-{high:.3f}), n={m['n']}"
        )
        table.add_row(
            f"{split} macro recall / F1", f"{m['macro_recall']:.3f} / {m['macro_f1']:.3f}"
        )
    table.add_row("training", summary["training"])
    table.add_row(
        "wall time", f"{summary['wall_time_s']:.1f} s (encoding {summary['encode_seconds']:.1f} s)"
    )
    table.add_row("run directory", summary["run_dir"])
    Console().print(table)
    print(f'classify: {PROG} --predict {summary["run_dir"]} "some text"')
