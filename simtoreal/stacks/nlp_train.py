"""Training the NLP stack: the head on cached features, the layer probe, fine-tuning of the
top blocks on texts, and the metrics (accuracy, macro recall, macro F1 with intervals)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from simtoreal.core import Stack
from simtoreal.errors import ConfigError, DataError
from simtoreal.stacks.nlp import POOLINGS, Choice, NLPConfig, build_head_stack, tokenize
from simtoreal.stacks.nlp_data import stratified_split
from simtoreal.stacks.nlp_features import progress

# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` counts, rows = true class, columns = predicted."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )


def _scores(cm: np.ndarray) -> tuple[float, float, float]:
    """Accuracy, macro recall, macro F1 of a confusion matrix ``(..., C, C)``."""
    diag = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    true, pred = cm.sum(axis=-1), cm.sum(axis=-2)
    recall = np.divide(diag, true, out=np.zeros_like(diag), where=true > 0)
    precision = np.divide(diag, pred, out=np.zeros_like(diag), where=pred > 0)
    f1 = np.divide(2 * precision * recall, precision + recall,
                   out=np.zeros_like(diag), where=(precision + recall) > 0)  # fmt: skip
    present = true > 0
    accuracy = diag.sum(-1) / cm.sum(axis=(-2, -1))
    macro_recall = (recall * present).sum(-1) / present.sum(-1)
    return accuracy, macro_recall, (f1 * present).sum(-1) / present.sum(-1)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Accuracy (Wilson 95% CI), macro recall and macro F1 (bootstrap 95% CIs over examples),
    the confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion(y_true, y_pred, n_classes)
    accuracy, macro_recall, macro_f1 = _scores(cm)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_boot, len(y_true)))
    flat = y_true[idx] * n_classes + y_pred[idx]
    boot = np.stack([np.bincount(row, minlength=n_classes**2) for row in flat])
    _, boot_recall, boot_f1 = _scores(boot.reshape(n_boot, n_classes, n_classes))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy),
        "accuracy_ci": list(wilson(int(np.trace(cm)), len(y_true))),
        "macro_recall": float(macro_recall),
        "macro_recall_ci": [float(np.quantile(boot_recall, q)) for q in (0.025, 0.975)],
        "macro_f1": float(macro_f1),
        "macro_f1_ci": [float(np.quantile(boot_f1, q)) for q in (0.025, 0.975)],
        "confusion": cm.tolist(),
    }


# ---------------------------------------------------------------------------------------------
# The head on cached features
# ---------------------------------------------------------------------------------------------


@dataclass
class HeadFit:
    """A trained ``select -> head`` stack and its per-epoch record."""

    stack: Stack
    history: list[dict[str, Any]]
    best_epoch: int
    seconds: float


@torch.no_grad()
def predict_logits(stack: nn.Module, features: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """``(N, L+1, H)`` features -> ``(N, C)`` logits, in eval mode."""
    stack.eval()
    return torch.cat([stack(features[i : i + batch]) for i in range(0, len(features), batch)])


def accuracy_of(stack: nn.Module, features: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_logits(stack, features).argmax(1) == y).float().mean())


def fit_head(
    features: torch.Tensor,
    y: torch.Tensor,
    choice: Choice,
    config: NLPConfig,
    n_classes: int,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int | None = None,
) -> HeadFit:
    """Train ``select -> head`` on features ``(N, L+1, H)`` and labels ``(N,)``.

    With ``val`` the weights of the epoch with the best validation accuracy are kept (ties go to
    the later epoch); without, those of the last epoch."""
    start = time.perf_counter()
    torch.manual_seed(config.seed if seed is None else seed)
    stack = build_head_stack(features.shape[1], features.shape[2], n_classes, choice,
                             config.hidden_dim)  # fmt: skip
    stack["select"].fit_stats(features)
    optimizer = stack.make_optimizer(config.lr, optimizer_cls=torch.optim.AdamW,
                                     weight_decay=config.weight_decay)  # fmt: skip
    history, best, best_state = [], -1.0, None
    for epoch in range(config.epochs):
        loss = _head_epoch(stack, optimizer, features, y, config.head_batch_size)
        record = {"epoch": epoch + 1, "train_loss": round(loss, 5)}
        if val is not None:
            record["val_accuracy"] = round(accuracy_of(stack, *val), 5)
            if record["val_accuracy"] >= best:
                best, best_state = record["val_accuracy"], copy.deepcopy(stack.state_dict())
                best_epoch = epoch + 1
        history.append(record)
    if best_state is None:
        best_epoch = config.epochs
    else:
        stack.load_state_dict(best_state)
    return HeadFit(stack.eval(), history, best_epoch, time.perf_counter() - start)


def _head_epoch(
    stack: Stack, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch: int
) -> float:
    stack.train()
    order = torch.randperm(len(x))
    total = 0.0
    for i in range(0, len(x), batch):
        rows = order[i : i + batch]
        loss = F.cross_entropy(stack(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(rows)
    return total / len(x)


# ---------------------------------------------------------------------------------------------
# The layer probe and the choice of layer / pooling
# ---------------------------------------------------------------------------------------------


def probe_layers(
    train: dict[str, torch.Tensor],
    y: torch.Tensor,
    config: NLPConfig,
    n_classes: int,
    val: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
    folds: int = 5,
    poolings: Sequence[str] = POOLINGS,
) -> list[dict[str, Any]]:
    """Validation accuracy (Wilson 95% CI) of the same head on every layer x pooling.

    ``train``/``val`` features are ``{pooling: (N, L+1, H)}``. With ``val`` each head trains on
    ``train`` for ``config.epochs`` and is scored on ``val``; without, by stratified
    ``folds``-fold cross-validation on ``train`` (out-of-fold predictions of all N rows)."""
    rows = []
    n_states = next(iter(train.values())).shape[1]
    for pooling in poolings:
        for layer in progress(range(n_states), f"probe ({pooling})", unit="layer"):
            choice = Choice(layer, pooling)
            if val is None:
                correct, n = _cv_correct(train[pooling], y, choice, config, n_classes, folds)
            else:
                fit = fit_head(train[pooling], y, choice, config, n_classes)
                pred = predict_logits(fit.stack, val[0][pooling]).argmax(1)
                correct, n = int((pred == val[1]).sum()), len(val[1])
            low, high = wilson(correct, n)
            rows.append({"layer": layer, "pooling": pooling, "accuracy": correct / n,
                         "ci_low": low, "ci_high": high, "n": n,
                         "protocol": "validation split" if val is not None
                         else f"{folds}-fold cross-validation"})  # fmt: skip
    return rows


def _cv_correct(
    x: torch.Tensor, y: torch.Tensor, choice: Choice, config: NLPConfig, n_classes: int,
    folds: int,
) -> tuple[int, int]:  # fmt: skip
    if folds < 2 or len(y) < 2 * folds:
        raise DataError(
            f"cross-validation needs >= {2 * folds} training rows, got {len(y)}: add data or give "
            "a validation split (--val-split)."
        )
    parts = stratified_split([str(v) for v in y.tolist()], [1 / folds] * folds, config.seed)
    correct = 0
    for k, held in enumerate(parts):
        fit_rows = torch.from_numpy(np.concatenate([p for j, p in enumerate(parts) if j != k]))
        fit = fit_head(x[fit_rows], y[fit_rows], choice, config, n_classes)
        pred = predict_logits(fit.stack, x[torch.from_numpy(held)]).argmax(1)
        correct += int((pred == y[torch.from_numpy(held)]).sum())
    return correct, len(y)


def choose(config: NLPConfig, n_layers: int, probe: list[dict[str, Any]] | None) -> Choice:
    """Resolve ``config.layer`` / ``config.pooling`` ('auto' from the probe's validation rows:
    the best accuracy, ties to the higher layer)."""
    from simtoreal.stacks.nlp import resolve_layer

    fixed_layer = None if config.layer in ("auto", "mix") else resolve_layer(config.layer, n_layers)
    if config.layer != "auto" and config.pooling != "auto":
        return Choice(fixed_layer, config.pooling)
    if probe is None:
        raise ConfigError("layer or pooling 'auto' needs the layer probe; this is a bug.")
    candidates = [r for r in probe if config.pooling in ("auto", r["pooling"])
                  and (config.layer in ("auto", "mix") or r["layer"] == fixed_layer)]  # fmt: skip
    best = max(candidates, key=lambda r: (r["accuracy"], r["layer"]))
    layer = None if config.layer == "mix" else best["layer"]
    return Choice(layer, best["pooling"], reason=f"best on {best['protocol']}",
                  scores={"accuracy": best["accuracy"]})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Fine-tuning the top blocks on texts
# ---------------------------------------------------------------------------------------------


def fine_tune(
    stack: Stack,
    tokenizer: Any,
    texts: Sequence[str],
    y: torch.Tensor,
    config: NLPConfig,
    epochs: int,
    evaluate: Callable[[], float] | None = None,
) -> list[dict[str, Any]]:
    """Train ``stack`` (encoder -> encoder_top -> select -> head) on tokenized text batches for
    ``epochs`` passes; the core's rules decide what trains in each epoch. With ``evaluate``
    (returning validation accuracy) the best epoch's trainable weights are kept."""
    torch.manual_seed(config.seed)
    optimizer = None
    history, best, best_state = [], -1.0, None
    for epoch in range(epochs):
        if optimizer is None:
            optimizer = _optimizer_for(stack, config, epoch)
        else:
            stack.update_for_epoch(optimizer, epoch, base_lr=config.lr)
        start, loss = (
            time.perf_counter(),
            _text_epoch(stack, optimizer, tokenizer, texts, y, config),
        )
        record = {"epoch": epoch + 1, "train_loss": round(loss, 5),
                  "trains": [g["name"] for g in optimizer.param_groups],
                  "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
        if evaluate is not None:
            record["val_accuracy"] = round(evaluate(), 5)
            if record["val_accuracy"] >= best:
                best, best_state = record["val_accuracy"], _trainable_state(stack)
        history.append(record)
    if best_state is not None:
        stack.load_state_dict(best_state, strict=False)
    return history


def _optimizer_for(stack: Stack, config: NLPConfig, epoch: int) -> torch.optim.Optimizer:
    return stack.make_optimizer(config.lr, epoch, optimizer_cls=torch.optim.AdamW,
                                weight_decay=config.weight_decay)  # fmt: skip


def _trainable_state(stack: Stack) -> dict[str, torch.Tensor]:
    names = {n for n, p in stack.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in stack.state_dict().items()
            if k in names or k.startswith("stages.select.")}  # fmt: skip


def _text_epoch(
    stack: Stack, optimizer: torch.optim.Optimizer, tokenizer: Any, texts: Sequence[str],
    y: torch.Tensor, config: NLPConfig,
) -> float:  # fmt: skip
    stack.train()
    order = torch.randperm(len(texts)).tolist()
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    total = 0.0
    for rows in progress(batches, "fine-tuning", unit="batch"):
        inputs = tokenize(tokenizer, [texts[i] for i in rows], config.max_length)
        loss = F.cross_entropy(stack(inputs), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(rows)
    return total / len(texts)


@torch.no_grad()
def predict_texts(
    stack: Stack, tokenizer: Any, texts: Sequence[str], config: NLPConfig
) -> torch.Tensor:
    """Logits ``(N, C)`` of the whole stack on raw texts, in eval mode and in the order given
    (batches are formed by length so that dynamic padding wastes little)."""
    stack.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = [
        stack(tokenize(tokenizer, [texts[j] for j in order[i : i + config.batch_size]],
                       config.max_length))
        for i in range(0, len(order), config.batch_size)
    ]  # fmt: skip
    return torch.cat(chunks)[torch.from_numpy(np.argsort(order))]
