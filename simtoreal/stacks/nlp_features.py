"""Frozen-encoder features, computed once per text and cached.

:func:`encode_all_layers` runs the encoder once over a list of texts (unique texts only, sorted
by length so dynamic padding wastes little, in batches) and returns the pooled hidden state of
every layer for both poolings. :class:`FeatureCache` keeps those tensors in memory and, with a
directory, on disk as safetensors, keyed by the model's fingerprint, the max length and the
texts; a layer and a pooling are slices of one entry, so a probe over all of them costs one pass.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from simtoreal.runs import atomic_write_bytes
from simtoreal.stacks.nlp import POOLINGS, pool, tokenize

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def progress(iterable: Iterable, desc: str, total: int | None = None, unit: str = "it") -> Any:
    """tqdm on a terminal; on a pipe or log file, a plain line every 30 s."""
    tty = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                mininterval=0.5 if tty else 30.0, ascii=not tty, dynamic_ncols=tty)  # fmt: skip


def model_fingerprint(path: Path) -> str:
    """sha256 of the model directory's config, tokenizer files and weights (size + first and
    last MiB): changes when the model changes, costs milliseconds."""
    digest = hashlib.sha256()
    for name in ("config.json", *TOKENIZER_FILES, *WEIGHT_FILES):
        file = path / name
        if not file.is_file():
            continue
        size = file.stat().st_size
        digest.update(f"{name}:{size}:".encode())
        with file.open("rb") as f:
            digest.update(f.read(1 << 20))
            if size > 1 << 20:
                f.seek(max(size - (1 << 20), 1 << 20))
                digest.update(f.read())
    return digest.hexdigest()[:16]


def texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


@torch.inference_mode()
def encode_all_layers(
    encoder: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    desc: str = "encoding",
) -> dict[str, torch.Tensor]:
    """Pooled hidden states of every layer: ``{"cls": (N, L+1, H), "mean": (N, L+1, H)}``
    float32, row ``i`` for ``texts[i]``; each distinct text is encoded once."""
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    lengths = [len(ids) for ids in tokenizer(list(unique), truncation=True,
                                             max_length=max_length)["input_ids"]]  # fmt: skip
    order = np.argsort(lengths, kind="stable")
    out: dict[str, list[torch.Tensor]] = {p: [] for p in POOLINGS}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress(batches, desc, unit="batch"):
        inputs = tokenize(tokenizer, [unique[i] for i in batch], max_length)
        hidden = encoder(**inputs, output_hidden_states=True).hidden_states
        mask = inputs.get("attention_mask")
        for p in POOLINGS:
            out[p].append(torch.stack([pool(h, mask, p) for h in hidden], dim=1).float())
    back = torch.from_numpy(np.argsort(order)[inverse])  # sorted position of each text
    return {p: torch.cat(out[p])[back].contiguous() for p in POOLINGS}


class FeatureCache:
    """Features of a frozen encoder per (model, max length, texts), in memory and optionally on
    disk (``<dir>/<model>-len<max_length>-<texts>.safetensors``). Tracks encoding time."""

    def __init__(
        self, encoder: nn.Module, tokenizer: Any, model_path: Path, max_length: int,
        batch_size: int, directory: Path | None = None,
    ) -> None:  # fmt: skip
        self.encoder, self.tokenizer = encoder, tokenizer
        self.max_length, self.batch_size, self.directory = max_length, batch_size, directory
        self.model_key = model_fingerprint(model_path)
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self.encode_seconds, self.encoded_texts, self.hits = 0.0, 0, 0

    def key(self, texts: Sequence[str]) -> str:
        return f"{self.model_key}-len{self.max_length}-{texts_digest(texts)}"

    def get(self, texts: Sequence[str], desc: str = "encoding") -> dict[str, torch.Tensor]:
        """``{"cls": (N, L+1, H), "mean": (N, L+1, H)}`` for ``texts``, encoding on a miss."""
        key = self.key(texts)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        features = self._load(key)
        if features is None:
            start = time.perf_counter()
            features = encode_all_layers(
                self.encoder, self.tokenizer, texts, self.max_length, self.batch_size, desc
            )
            self.encode_seconds += time.perf_counter() - start
            self.encoded_texts += len(set(texts))
            self._save(key, features)
        else:
            self.hits += 1
        self._memory[key] = features
        return features

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.safetensors"

    def _load(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError):
            return None  # a damaged cache entry is recomputed and rewritten

    def _save(self, key: str, features: dict[str, torch.Tensor]) -> None:
        path = self._path(key)
        if path is not None:
            from safetensors.torch import save

            atomic_write_bytes(path, save(features))
