"""A trained NLP stack on disk and back: ``save_classifier`` writes the head (and any fine-tuned
encoder blocks) as safetensors with a JSON description and the label map; ``load_classifier``
rebuilds it on the same encoder::

    clf = load_classifier("runs/nlp-20261129-031500")
    clf.predict(["what a lovely day", "worst service ever"])   # -> ['positive', 'negative']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from simtoreal.core import Stack
from simtoreal.errors import CheckpointError, DataError, IncompatibleError, RunDirError
from simtoreal.runs import atomic_write_bytes, atomic_write_json
from simtoreal.stacks.nlp import (
    Choice,
    NLPConfig,
    build_head_stack,
    build_stack,
    encoder_blocks,
    load_encoder,
    num_layers,
    tuned_blocks,
)
from simtoreal.stacks.nlp_data import LabelMap
from simtoreal.stacks.nlp_features import model_fingerprint
from simtoreal.stacks.nlp_train import classification_metrics, predict_texts

CLASSIFIER_FILE, LABELS_FILE = "classifier.json", "label_map.json"
HEAD_FILE, BLOCKS_FILE = "head.safetensors", "encoder_top.safetensors"


def save_classifier(
    run_dir: Path, stack: Stack, choice: Choice, config: NLPConfig, label_map: LabelMap,
    model_path: Path,
) -> None:  # fmt: skip
    """Write head.safetensors (+ encoder_top.safetensors when blocks were tuned), the label map
    and classifier.json into ``run_dir``; classifier.json last, so it marks a complete save."""
    head = {f"{name}.{k}": v.contiguous() for name in ("select", "head")
            for k, v in stack[name].state_dict().items()}  # fmt: skip
    atomic_write_bytes(run_dir / HEAD_FILE, save(head))
    if config.top_k:
        encoder = stack["encoder"].source
        blocks = {f"{i}.{k}": v.contiguous() for i, block in _tuned_indexed(encoder, choice, config)
                  for k, v in block.state_dict().items()}  # fmt: skip
        atomic_write_bytes(run_dir / BLOCKS_FILE, save(blocks))
    atomic_write_json(run_dir / LABELS_FILE, label_map.to_dict())
    atomic_write_json(run_dir / CLASSIFIER_FILE, {
        "model": config.model,
        "model_path": str(model_path),
        "model_fingerprint": model_fingerprint(model_path),
        "layer": choice.layer,
        "pooling": choice.pooling,
        "max_length": config.max_length,
        "batch_size": config.batch_size,
        "hidden_dim": config.hidden_dim,
        "top_k": config.top_k,
    })  # fmt: skip


def _tuned_indexed(encoder: torch.nn.Module, choice: Choice, config: NLPConfig):
    blocks = list(encoder_blocks(encoder))
    tuned = tuned_blocks(encoder, choice, config.top_k)
    return [(blocks.index(b), b) for b in tuned]


class TextClassifier:
    """A trained stack with its tokenizer and label names. ``predict(texts) -> labels``."""

    def __init__(self, stack: Stack, tokenizer: Any, label_map: LabelMap, config: NLPConfig):
        self.stack, self.tokenizer = stack.eval(), tokenizer
        self.label_map, self.config = label_map, config

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_map.names

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``(N, C)``, columns in the order of :attr:`labels`."""
        texts = _checked(texts)
        logits = predict_texts(self.stack, self.tokenizer, texts, self.config)
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def evaluate(self, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        """Accuracy / macro recall / macro F1 with CIs on labelled texts; labels the model does
        not know are refused before any text is encoded."""
        y = self.label_map.encode([str(label) for label in labels], where="evaluate")
        if len(y) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(y)} labels: pass one label per text.")
        pred = self.predict_proba(texts).argmax(axis=1)
        return classification_metrics(y, pred, len(self.labels))


def _checked(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise DataError("no texts given: pass a list of at least one non-empty string.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(
            f"text(s) at position(s) {bad[:5]} are empty or not strings: pass non-empty strings "
            "(a list of them for several texts)."
        )
    return texts


def load_classifier(run_dir: str | Path, model: str | None = None) -> TextClassifier:
    """The classifier saved in ``run_dir``. ``model`` overrides the encoder directory recorded
    at training time (it must be the same model: its fingerprint is checked)."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / CLASSIFIER_FILE, run_dir)
    label_map = LabelMap.from_dict(_read_json(run_dir / LABELS_FILE, run_dir))
    encoder, tokenizer, path = load_encoder(model or info["model"] or None)
    if model_fingerprint(path) != info["model_fingerprint"]:
        raise IncompatibleError(
            f"the encoder at {path} is not the one {run_dir} was trained on "
            f"({info['model_path']}): pass --model with that model's directory."
        )
    config = NLPConfig(model=model or info["model"], layer="mix" if info["layer"] is None else
                       info["layer"], pooling=info["pooling"], max_length=info["max_length"],
                       batch_size=info["batch_size"], hidden_dim=info["hidden_dim"],
                       top_k=info["top_k"], cache_dir=None)  # fmt: skip
    choice = Choice(info["layer"], info["pooling"])
    n_states, width = num_layers(encoder) + 1, int(encoder.config.hidden_size)
    head_stack = build_head_stack(n_states, width, len(label_map.names), choice, config.hidden_dim)
    _load_head(head_stack, run_dir / HEAD_FILE)
    stack = build_stack(encoder, head_stack, choice, config.top_k, config.encoder_lr_scale)
    if config.top_k:
        _load_blocks(encoder, choice, config, run_dir / BLOCKS_FILE)
    return TextClassifier(stack, tokenizer, label_map, config)


def _read_json(path: Path, run_dir: Path) -> dict:
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} has no {path.name}: it is not a finished NLP run (train one with "
            "python -m simtoreal.train nlp --data ...)."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}): retrain the run.") from err


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as err:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"cannot read {path} ({err}): retrain the run.") from err


def _load_head(head_stack: Stack, path: Path) -> None:
    state = _load_file(path)
    for name in ("select", "head"):
        part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        head_stack[name].load_state_dict(part)


def _load_blocks(encoder: torch.nn.Module, choice: Choice, config: NLPConfig, path: Path) -> None:
    state = _load_file(path)
    for i, block in _tuned_indexed(encoder, choice, config):
        block.load_state_dict({k[len(f"{i}.") :]: v for k, v in state.items()
                               if k.startswith(f"{i}.")})  # fmt: skip
