"""NLP stack benchmark on real sentiment data: the layer probe, the reference configuration, the
best tapped one, a learned layer mix, low-LR fine-tuning of the top blocks, a bag-of-words
logistic-regression baseline, and forgetting after fine-tuning, in one run on one machine.

    python benchmarks/bench_nlp.py --data ../shared/data            # about 30 min on 2 cores
    python benchmarks/bench_nlp.py --data ../shared/data --quick --out /tmp/b   # smoke test

Protocols (see ../shared/data/README.md): SST-2 trains on a stratified subset of train.tsv
(--sst2-train rows; encoding all 60k phrases on 2 shared CPU cores takes too long), selects on a
stratified subset of dev.tsv and reports on all 872 sentences of test.tsv. TweetEval trains on
the 2,000 validation tweets, selects by 5-fold cross-validation on them and reports on the
12,284 test tweets. Fine-tuning is bounded (a subset, one pass; see --ft-*), and its test numbers
are measured on --ft-test texts of the test split, beside the frozen stack on the same texts.

Writes nlp.md, nlp.json and nlp.png to --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine_info  # noqa: E402

from simtoreal.stacks.nlp import (  # noqa: E402
    Choice,
    NLPConfig,
    build_stack,
    load_encoder,
    num_layers,
)
from simtoreal.stacks.nlp_data import (  # noqa: E402
    LabelMap,
    TextSplit,
    read_line_files,
    read_mapping,
    read_table,
    stratified_split,
)
from simtoreal.stacks.nlp_features import FeatureCache, encode_all_layers  # noqa: E402
from simtoreal.stacks.nlp_train import (  # noqa: E402
    classification_metrics,
    fine_tune,
    fit_head,
    predict_logits,
    predict_texts,
    probe_layers,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=Path("../shared/data"),
                   help="folder holding sst2/ and tweeteval-sentiment/")  # fmt: skip
    p.add_argument("--model", default=None, help="encoder directory (default: packaged MiniLM)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--cache-dir", type=Path, default=Path("runs/nlp-cache"))
    p.add_argument("--sst2-train", type=int, default=20000, help="SST-2 training phrases used")
    p.add_argument("--sst2-val", type=int, default=2000, help="SST-2 dev phrases for selection")
    p.add_argument("--seeds", type=int, default=3, help="head seeds per configuration")
    p.add_argument("--ft-train", type=int, default=1000, help="texts of one fine-tuning pass")
    p.add_argument("--ft-test", type=int, default=2000, help="test texts scored after fine-tuning")
    p.add_argument("--ft-seeds", type=int, default=3, help="fine-tuning seeds (SST-2)")
    p.add_argument("--ft-seeds-tweets", type=int, default=3, help="fine-tuning seeds (TweetEval)")
    p.add_argument("--forget-texts", type=int, default=300, help="held-out texts for forgetting")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: measured 5x faster than 2 for the heads on the shared machine)",
    )
    p.add_argument("--encode-only", action="store_true", help="fill the feature cache and stop")
    p.add_argument("--render-only", action="store_true", help="rewrite nlp.md/.png from nlp.json")
    p.add_argument("--quick", action="store_true", help="tiny subsets: a smoke test")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Task:
    name: str
    train: TextSplit
    val: TextSplit | None  # None: cross-validation on train
    test: TextSplit
    label_map: LabelMap
    protocol: str


def _rows(split: TextSplit, n: int, seed: int = 0) -> np.ndarray:
    """Row indices of a stratified subset of ``n`` rows (all rows if ``n`` >= the size)."""
    if n >= len(split):
        return np.arange(len(split))
    share = n / len(split)
    return stratified_split(split.labels, (share, 1 - share), seed)[0]


def _subset(split: TextSplit, n: int, seed: int = 0) -> TextSplit:
    return split if n >= len(split) else split.subset(_rows(split, n, seed))


def load_tasks(args: argparse.Namespace) -> list[Task]:
    sst = args.data / "sst2"
    n_train, n_val, n_test = (
        (300, 200, 200) if args.quick else (args.sst2_train, args.sst2_val, 10**9)
    )
    train = _subset(read_table(sst / "train.tsv", "sentence", "label"), n_train)
    val = _subset(read_table(sst / "dev.tsv", "sentence", "label"), n_val)
    test = _subset(read_table(sst / "test.tsv", "sentence", "label"), n_test)
    sst2 = Task("SST-2", train, val, test, LabelMap.from_labels(train.labels),
                f"train: {len(train):,} of the 60,614 train.tsv phrases (stratified); select: "
                f"{len(val):,} of the 6,735 dev.tsv phrases; test: {len(test)} test.tsv sentences")  # fmt: skip
    tw = args.data / "tweeteval-sentiment"
    mapping = read_mapping(tw)
    splits = [
        read_line_files(tw / f"{s}_text.txt", tw / f"{s}_labels.txt") for s in ("val", "test")
    ]
    for split in splits:
        split.labels = [mapping.get(label, label) for label in split.labels]
    if args.quick:
        splits = [_subset(splits[0], 300), _subset(splits[1], 200)]
    tweets = Task("TweetEval", splits[0], None, splits[1], LabelMap(tuple(mapping.values())),
                  f"train: {len(splits[0]):,} validation tweets, select: 5-fold CV on them; "
                  f"test: {len(splits[1]):,} test tweets")  # fmt: skip
    return [sst2, tweets]


def labels_of(task: Task, split: TextSplit) -> torch.Tensor:
    return torch.from_numpy(task.label_map.encode(split.labels, where=split.source))


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def encode(cache: FeatureCache, task: Task) -> dict[str, Any]:
    """Features of every split through the cache, with the encoding time of each."""
    out = {}
    for name in ("train", "val", "test"):
        split = getattr(task, name)
        if split is None:
            continue
        before = cache.encode_seconds
        features = cache.get(split.texts, desc=f"{task.name} {name}")
        seconds = cache.encode_seconds - before
        out[name] = {"x": features, "y": labels_of(task, split), "seconds": seconds,
                     "n": len(split)}  # fmt: skip
    return out


def head_runs(task: Task, feats: dict, choice: Choice, config: NLPConfig, seeds: int,
              test_rows: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """Head fitted ``seeds`` times on cached features; test metrics of each seed."""
    n_classes = len(task.label_map.names)
    train_x, y = feats["train"]["x"][choice.pooling], feats["train"]["y"]
    val = None if "val" not in feats else (feats["val"]["x"][choice.pooling], feats["val"]["y"])
    test_x, test_y = feats["test"]["x"][choice.pooling], feats["test"]["y"]
    if test_rows is not None:
        test_x, test_y = test_x[test_rows], test_y[test_rows]
    runs = []
    for seed in range(seeds):
        fit = fit_head(train_x, y, choice, config, n_classes, val=val, seed=seed)
        pred = predict_logits(fit.stack, test_x).argmax(1).numpy()
        metrics = classification_metrics(test_y.numpy(), pred, n_classes, seed=seed)
        runs.append({"seed": seed, "head_seconds": fit.seconds, "best_epoch": fit.best_epoch,
                     **{k: metrics[k] for k in ("accuracy", "macro_recall", "macro_f1")},
                     "confusion": metrics["confusion"]})  # fmt: skip
    return aggregate(runs)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds of each metric."""
    from scipy import stats

    out: dict[str, Any] = {"runs": runs, "n_seeds": len(runs)}
    for key in ("accuracy", "macro_recall", "macro_f1"):
        values = np.array([r[key] for r in runs])
        half = 0.0
        if len(values) > 1:
            half = float(
                stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
            )
        out[key] = float(values.mean())
        out[f"{key}_ci"] = [float(values.mean() - half), float(values.mean() + half)]
    return out


def bag_of_words(task: Task) -> dict[str, Any]:
    """TF-IDF unigrams+bigrams -> logistic regression; C chosen on val (or 5-fold CV)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()
    texts, y = list(task.train.texts), task.label_map.encode(task.train.labels)
    if task.val is not None:
        fold = np.r_[np.full(len(texts), -1), np.zeros(len(task.val))]
        texts, y = texts + list(task.val.texts), np.r_[y, task.label_map.encode(task.val.labels)]
        cv = PredefinedSplit(fold)
    else:
        cv = 5
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(max_iter=2000))  # fmt: skip
    search = GridSearchCV(pipe, {"logisticregression__C": [0.5, 2.0, 8.0]}, cv=cv,
                          scoring="accuracy", refit=False)  # fmt: skip
    search.fit(texts, y)
    best_c = search.best_params_["logisticregression__C"]
    pipe.set_params(logisticregression__C=best_c)
    pipe.fit(task.train.texts, task.label_map.encode(task.train.labels))  # train split only
    pred = pipe.predict(task.test.texts)
    metrics = classification_metrics(task.label_map.encode(task.test.labels), pred,
                                     len(task.label_map.names))  # fmt: skip
    return {**metrics, "C": best_c, "seconds": time.perf_counter() - start}


def fine_tune_runs(task: Task, feats: dict, encoder_path: str | None, choice: Choice,
                   config: NLPConfig, args: argparse.Namespace, seeds: int,
                   forget_texts: list[str]) -> dict[str, Any]:  # fmt: skip
    """Fit the head on frozen features of ``--ft-train`` texts, then one low-LR pass over them
    that trains the top blocks too; test metrics on ``--ft-test`` texts (and of the frozen stack
    on the same texts); forgetting on held-out texts."""
    n_classes = len(task.label_map.names)
    train_rows, test_rows = _rows(task.train, args.ft_train), _rows(task.test, args.ft_test)
    ft_train, test = task.train.subset(train_rows), task.test.subset(test_rows)
    y, test_y = feats["train"]["y"][train_rows], feats["test"]["y"][test_rows]
    train_x = feats["train"]["x"][choice.pooling][train_rows]
    test_x = feats["test"]["x"][choice.pooling][test_rows]
    runs = []
    for seed in range(seeds):
        encoder, tokenizer, _ = load_encoder(encoder_path)  # a fresh copy per seed
        before_embed = sentence_embeddings(encoder, tokenizer, forget_texts, config)
        cfg = dataclasses.replace(config, seed=seed)
        fit = fit_head(train_x, y, choice, cfg, n_classes, seed=seed)
        frozen_pred = predict_logits(fit.stack, test_x)
        frozen = classification_metrics(test_y.numpy(), frozen_pred.argmax(1).numpy(), n_classes)
        stack = build_stack(encoder, fit.stack, choice, cfg.top_k, cfg.encoder_lr_scale)
        start = time.perf_counter()
        history = fine_tune(stack, tokenizer, ft_train.texts, y, cfg, cfg.finetune_epochs)
        ft_seconds = time.perf_counter() - start
        pred = predict_texts(stack, tokenizer, test.texts, cfg).argmax(1).numpy()
        metrics = classification_metrics(test_y.numpy(), pred, n_classes, seed=seed)
        after_embed = sentence_embeddings(encoder, tokenizer, forget_texts, config)
        runs.append({"seed": seed, **{k: metrics[k] for k in ("accuracy", "macro_recall", "macro_f1")},
                     "frozen_same_texts": {k: frozen[k] for k in ("accuracy", "macro_recall", "macro_f1")},
                     "finetune_seconds": ft_seconds,
                     "finetune_texts_per_s": len(ft_train) * cfg.finetune_epochs / ft_seconds,
                     "history": history, **forgetting(before_embed, after_embed)})  # fmt: skip
    out = aggregate(runs)
    out["frozen_same_texts"] = aggregate(
        [r["frozen_same_texts"] | {"seed": r["seed"]} for r in runs]
    )
    for key in ("cosine_self", "similarity_spearman"):
        out[key] = float(np.mean([r[key] for r in runs]))
    out.update(n_train=len(ft_train), n_test=len(test), top_k=config.top_k,
               lr_scale=config.encoder_lr_scale, head_lr=config.lr, epochs=config.finetune_epochs)  # fmt: skip
    return out


def sentence_embeddings(encoder, tokenizer, texts: list[str], config: NLPConfig) -> torch.Tensor:
    """MiniLM's own sentence embedding: mean pooling of the last layer, ``(N, H)``."""
    return encode_all_layers(encoder, tokenizer, texts, config.max_length, config.batch_size,
                             desc="forgetting probe")["mean"][:, -1]  # fmt: skip


def forgetting(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """How far the encoder's sentence embeddings moved on held-out text: the mean cosine of each
    text's embedding with itself before vs after, and the Spearman correlation of all pairwise
    cosine similarities before vs after (1 = the similarity structure is intact)."""
    from scipy.stats import spearmanr

    self_cos = torch.nn.functional.cosine_similarity(before, after, dim=1).mean()
    norm_b, norm_a = (torch.nn.functional.normalize(x, dim=1) for x in (before, after))
    iu = np.triu_indices(len(before), k=1)
    sims_b, sims_a = (norm_b @ norm_b.T).numpy()[iu], (norm_a @ norm_a.T).numpy()[iu]
    return {
        "cosine_self": float(self_cos),
        "similarity_spearman": float(spearmanr(sims_b, sims_a)[0]),
    }


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _ci(m: dict[str, Any], key: str) -> str:
    if m.get("n_seeds") == 1:
        return f"{m[key]:.3f} (1 seed: no interval)"
    low, high = m[f"{key}_ci"]
    return f"{m[key]:.3f} ({low:.3f}-{high:.3f})"


def _task_lines(name: str, t: dict[str, Any]) -> list[str]:
    enc = t["encoding"]
    fresh = {k: v for k, v in enc.items() if v["seconds"] > 0}
    n_all, n_enc = sum(v["n"] for v in enc.values()), sum(v["n"] for v in fresh.values())
    s_enc = sum(v["seconds"] for v in fresh.values())
    rate = (f"{n_enc:,} of them ({', '.join(fresh)}) encoded in this run in {s_enc:.0f} s "
            f"({n_enc / s_enc:.0f} sentences/s), the rest read from the feature cache"
            if fresh else "all read from the feature cache")  # fmt: skip
    rate += ", which an earlier `--encode-only` run of this script filled (see docs/nlp.md)"
    tp = t["throughput"]
    lines = [f"## {name}", "", f"Protocol: {t['protocol']}.", "",
             f"Frozen features: {n_all:,} texts, all 7 hidden states x 2 poolings in one pass; "
             f"{rate}. Probe: {t['probe_seconds']:.0f} s for "
             f"{len(t['probe'])} heads. Encoder throughput measured uncached in this run: "
             f"{tp['n'] / tp['seconds']:.0f} test sentences/s ({tp['n']} texts, batch 64, "
             "every layer, both poolings).", "",
             "| method | test accuracy | macro recall | macro F1 | seeds | training wall time |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for method, m in t["configs"].items():
        head = np.mean([r["head_seconds"] for r in m["runs"]])
        lines.append(f"| {method} | {_ci(m, 'accuracy')} | {_ci(m, 'macro_recall')} | "
                     f"{_ci(m, 'macro_f1')} | {m['n_seeds']} | {head:.1f} s per head "
                     "(+ encoding) |")  # fmt: skip
    b = t["bag_of_words"]
    lines.append(f"| bag of words: TF-IDF 1-2 grams (min_df 2) + logistic regression (C={b['C']}) | "
                 f"{_ci(b, 'accuracy')} | {_ci(b, 'macro_recall')} | {_ci(b, 'macro_f1')} | "
                 f"deterministic | {b['seconds']:.1f} s incl. choosing C |")  # fmt: skip
    lines += ["", "Intervals: 95% t-intervals over seeds for the stacks (head initialisation and "
              "shuffling vary; features are fixed); for the bag-of-words baseline, a Wilson "
              "interval (accuracy) and bootstrap intervals over test texts.", ""]  # fmt: skip
    if "fine_tune" in t:
        f = t["fine_tune"]
        fz = f["frozen_same_texts"]
        speed = np.mean([r["finetune_texts_per_s"] for r in f["runs"]])
        secs = np.mean([r["finetune_seconds"] for r in f["runs"]])
        lines += [
            f"### Low-LR fine-tuning of the top {f['top_k']} blocks",
            "",
            f"Tap: layer {f['choice']['layer']}, {f['choice']['pooling']} pooling. Head fitted "
            f"first on frozen features of {f['n_train']} training texts, then {f['epochs']} pass "
            f"over the same texts training the head (lr {f['head_lr']}) and the top "
            f"{f['top_k']} blocks (lr {f['head_lr'] * f['lr_scale']:.0e}); {f['n_seeds']} "
            f"seed(s); scored on {f['n_test']} test texts. Fine-tuning pass: {secs:.0f} s "
            f"({speed:.1f} texts/s, forward + backward).",
            "",
            "| | test accuracy | macro recall | macro F1 |",
            "|---|---|---|---|",
            f"| frozen encoder, same head data and test texts | {_ci(fz, 'accuracy')} | "
            f"{_ci(fz, 'macro_recall')} | {_ci(fz, 'macro_f1')} |",
            f"| top {f['top_k']} blocks fine-tuned | {_ci(f, 'accuracy')} | "
            f"{_ci(f, 'macro_recall')} | {_ci(f, 'macro_f1')} |",
            "",
            f"Forgetting (MiniLM's own sentence embedding, last-layer mean pooling, on held-out "
            f"texts of the other data set): mean cosine of each text's embedding before vs after "
            f"{f['cosine_self']:.4f}; Spearman correlation of all pairwise similarities before vs "
            f"after {f['similarity_spearman']:.4f} (1 = unchanged).",
            "",
        ]  # fmt: skip
    lines += ["### Layer probe", "", "| layer | CLS accuracy (95% CI) | mean accuracy (95% CI) |",
              "|---|---|---|"]  # fmt: skip
    cell = {(r["layer"], r["pooling"]): r for r in t["probe"]}
    for layer in sorted({r["layer"] for r in t["probe"]}):
        row = [cell[(layer, p)] for p in ("cls", "mean")]
        lines.append(f"| {layer} | " + " | ".join(
            f"{r['accuracy']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})" for r in row) + " |")  # fmt: skip
    lines += ["", f"Probe protocol: {t['probe'][0]['protocol']}, n = {t['probe'][0]['n']} "
              "(Wilson 95% intervals); never the test split.", ""]  # fmt: skip
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    tasks = report["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.6), squeeze=False)
    for ax, (name, t) in zip(axes[0], tasks.items(), strict=True):
        for pooling in ("cls", "mean"):
            rows = [r for r in t["probe"] if r["pooling"] == pooling]
            x = np.array([r["layer"] for r in rows]) + (0.06 if pooling == "mean" else -0.06)
            y = np.array([r["accuracy"] for r in rows])
            err = [y - [r["ci_low"] for r in rows], [r["ci_high"] for r in rows] - y]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{pooling} pooling")
        ax.axhline(
            t["bag_of_words"]["accuracy"], color="gray", ls="--", label="bag of words (test)"
        )
        ax.set_title(f"{name}: layer probe ({t['probe'][0]['protocol']})", fontsize=9)
        ax.set_xlabel("hidden layer (0 = embeddings)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(report: dict[str, Any], out: Path) -> None:
    m = report["machine"]
    lines = [
        "# NLP stack: frozen MiniLM -> tapped layer -> MLP head, on real sentiment data",
        "",
        f"Command: `{report['command']}`  ",
        f"Started {report['started_utc']}; wall time {report['wall_time_s'] / 60:.1f} min. "
        f"Machine: {m['cpu_model']}, {m['cores_usable']} usable cores ({m['torch_threads']} "
        f"torch threads), load average {m['load_average_1m']} at the start: the machine was "
        "shared with two other jobs, so every time here is noisy. torch "
        f"{m.get('torch')}, encoder `{report['model']}` ({report['n_layers']} layers).",
        "",
    ]  # fmt: skip
    for name, t in report["tasks"].items():
        lines += _task_lines(name, t)
    lines += ["![layer probe](nlp.png)", ""]
    plot(report, out / "nlp.png")
    (out / "nlp.md").write_text("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run_task(task: Task, cache: FeatureCache, n_layers: int, args: argparse.Namespace,
             forget_texts: list[str]) -> dict[str, Any]:  # fmt: skip
    """Everything measured on one task; partial results are saved as they arrive."""
    config = NLPConfig(model=args.model, cache_dir=args.cache_dir, torch_threads=args.threads,
                       epochs=5 if args.quick else 30)  # fmt: skip
    feats = encode(cache, task)
    result: dict[str, Any] = {"protocol": task.protocol, "labels": list(task.label_map.names),
                              "encoding": {k: {"n": v["n"], "seconds": v["seconds"]}
                                           for k, v in feats.items()}}  # fmt: skip
    sample = task.test.texts[:: max(1, len(task.test) // 400)][:400]
    start = time.perf_counter()
    encode_all_layers(cache.encoder, cache.tokenizer, sample, 128, 64, desc="throughput")
    result["throughput"] = {"n": len(sample), "seconds": time.perf_counter() - start}
    n_classes = len(task.label_map.names)
    val = None if "val" not in feats else ({p: feats["val"]["x"][p] for p in ("cls", "mean")},
                                           feats["val"]["y"])  # fmt: skip
    start = time.perf_counter()
    result["probe"] = probe_layers(feats["train"]["x"], feats["train"]["y"], config, n_classes,
                                   val=val, folds=5)  # fmt: skip
    result["probe_seconds"] = time.perf_counter() - start
    best = max(result["probe"], key=lambda r: (r["accuracy"], r["layer"]))
    configs = {
        "reference: last layer, CLS, frozen": Choice(n_layers, "cls"),
        f"best tapped: layer {best['layer']}, {best['pooling']}, frozen": Choice(best["layer"], best["pooling"]),
        "learned mix of all layers, mean, frozen": Choice(None, "mean"),
    }  # fmt: skip
    result["configs"] = {}
    for name, choice in configs.items():
        result["configs"][name] = head_runs(task, feats, choice, config, args.seeds)
        result["configs"][name]["choice"] = dataclasses.asdict(choice)
        print(f"{task.name} {name}: {result['configs'][name]['accuracy']:.4f}", flush=True)
    result["bag_of_words"] = bag_of_words(task)
    print(f"{task.name} bag of words: {result['bag_of_words']['accuracy']:.4f}", flush=True)
    ft_choice = Choice(n_layers, best["pooling"])
    ft_config = dataclasses.replace(config, top_k=2, encoder_lr_scale=0.05, finetune_epochs=1,
                                    batch_size=16)  # fmt: skip
    seeds = args.ft_seeds if task.name == "SST-2" else args.ft_seeds_tweets
    if seeds:
        result["fine_tune"] = fine_tune_runs(task, feats, args.model, ft_choice, ft_config, args,
                                             seeds, forget_texts)  # fmt: skip
        result["fine_tune"]["choice"] = dataclasses.asdict(ft_choice)
        print(f"{task.name} fine-tune: {result['fine_tune']['accuracy']:.4f}", flush=True)
    return result


def main() -> None:
    args = parse_args()
    if args.render_only:
        render(json.loads((args.out / "nlp.json").read_text()), args.out)
        return
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    wall = time.perf_counter()
    tasks = load_tasks(args)
    encoder, tokenizer, path = load_encoder(args.model)
    cache = FeatureCache(encoder, tokenizer, path, 128, 64, args.cache_dir)
    if args.encode_only:
        for task in tasks:
            encode(cache, task)
        print(f"encoded {cache.encoded_texts} texts in {cache.encode_seconds:.0f} s")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": command, "started_utc": started.isoformat(timespec="seconds"),
                              "machine": machine_info(), "model": str(path),
                              "n_layers": num_layers(encoder), "tasks": {}}  # fmt: skip
    rng = np.random.default_rng(0)
    held_out = {  # forgetting is measured on the *other* task's test texts
        "SST-2": [tasks[1].test.texts[i] for i in rng.choice(len(tasks[1].test), args.forget_texts, replace=False)],
        "TweetEval": [tasks[0].test.texts[i] for i in rng.choice(len(tasks[0].test), min(args.forget_texts, len(tasks[0].test)), replace=False)],
    }  # fmt: skip
    for task in tasks:
        report["tasks"][task.name] = run_task(task, cache, num_layers(encoder), args,
                                              held_out[task.name])  # fmt: skip
        report["wall_time_s"] = time.perf_counter() - wall
        (args.out / "nlp.json").write_text(json.dumps(report, indent=1) + "\n")
    report["encode_texts_per_s"] = cache.encoded_texts / max(cache.encode_seconds, 1e-9)
    report["wall_time_s"] = time.perf_counter() - wall
    (args.out / "nlp.json").write_text(json.dumps(report, indent=1) + "\n")
    render(report, args.out)


if __name__ == "__main__":
    main()
