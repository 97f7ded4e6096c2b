"""Adapter core: a :class:`Stack` of stages ``frozen source -> trainable adapter -> head``, each
with a :class:`TrainRule`, and taps that expose an intermediate layer of a pretrained model."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Adam, Optimizer

from simtoreal.errors import ConfigError

Mode = Literal["frozen", "trainable", "scaled"]
_MODES = ("frozen", "trainable", "scaled")


def _require(ok: object, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(x: object, low: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def _is_positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class TrainRule:
    """How one stage trains.

    ``"frozen"``: no gradients, kept in eval mode; with ``unfreeze_after=N`` it trains at
    ``base_lr * lr_scale`` from epoch ``N`` on. ``"trainable"``: trains at ``base_lr``.
    ``"scaled"``: trains at ``base_lr * lr_scale``.
    """

    mode: Mode = "trainable"
    lr_scale: float = 1.0
    unfreeze_after: int | None = None

    def __post_init__(self) -> None:
        s, u = self.lr_scale, self.unfreeze_after
        _require(self.mode in _MODES, f"unknown TrainRule mode {self.mode!r}; use one of {_MODES}")
        _require(
            _is_positive(s),
            f"lr_scale must be a finite number > 0, got {s!r}; "
            "use TrainRule.frozen() to stop a stage from training",
        )
        _require(
            u is None or (self.mode == "frozen" and _is_int(u, 0)),
            f"unfreeze_after={u!r} needs mode='frozen' and an int epoch >= 0; "
            "use TrainRule.frozen(unfreeze_after=N, lr_scale=...)",
        )
        _require(
            s == 1.0 or self.mode == "scaled" or u is not None,
            f"lr_scale={s} is only used by mode='scaled' or a frozen stage with unfreeze_after; "
            "use TrainRule.scaled(lr_scale)",
        )

    @classmethod
    def frozen(cls, unfreeze_after: int | None = None, lr_scale: float = 1.0) -> TrainRule:
        """Frozen stage; trains at ``lr_scale`` from epoch ``unfreeze_after`` if given."""
        return cls("frozen", lr_scale, unfreeze_after)

    @classmethod
    def trainable(cls) -> TrainRule:
        """Stage trained at the base learning rate."""
        return cls("trainable")

    @classmethod
    def scaled(cls, lr_scale: float) -> TrainRule:
        """Stage trained at ``base_lr * lr_scale``."""
        return cls("scaled", lr_scale)

    def scale_at(self, epoch: int) -> float | None:
        """Learning-rate scale at ``epoch``, or ``None`` while the stage is frozen."""
        if self.mode == "frozen" and (self.unfreeze_after is None or epoch < self.unfreeze_after):
            return None
        return self.lr_scale


@dataclass
class Stage:
    """A named module of a :class:`Stack` and the rule for training it."""

    name: str
    module: nn.Module
    rule: TrainRule


class Stack(nn.Module):
    """Stages run in order: ``forward(x)`` feeds ``x`` (whatever the first stage takes, e.g. a
    ``(B, C, H, W)`` image batch or a dict of tokenized inputs) through each stage in turn.

    Stages frozen at the current epoch have ``requires_grad=False`` and stay in eval mode even
    under ``stack.train()``, so BatchNorm statistics and dropout of a frozen source do not drift.
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        names = [s.name for s in stages]
        _require(names, "a Stack needs at least one Stage")
        self.stages = nn.ModuleDict()
        self._rules: dict[str, TrainRule] = {}
        for stage in stages:
            _require(
                stage.name not in self._rules,
                f"duplicate stage name {stage.name!r} in {names}; give each stage its own name",
            )
            self.stages[stage.name] = stage.module
            self._rules[stage.name] = stage.rule
        self.epoch = 0
        self.apply_rules(0)

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self._rules:
            raise KeyError(f"no stage {name!r}; stages are {self.names}")
        return self.stages[name]

    @property
    def names(self) -> list[str]:
        """Stage names, in forward order."""
        return list(self._rules)

    def forward(self, x: Any) -> Any:
        for module in self.stages.values():
            x = module(x)
        return x

    def _frozen(self, name: str, epoch: int) -> bool:
        return self._rules[name].scale_at(epoch) is None

    def apply_rules(self, epoch: int = 0) -> Stack:
        """Set ``requires_grad`` of each stage for ``epoch``; frozen stages go to eval mode."""
        _require(_is_int(epoch, 0), f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch
        for name, module in self.stages.items():
            frozen = self._frozen(name, epoch)
            module.requires_grad_(not frozen)
            module.train(self.training and not frozen)
        return self

    def train(self, mode: bool = True) -> Stack:
        """Like ``nn.Module.train``, but stages frozen at the current epoch stay in eval mode."""
        super().train(mode)
        for name, module in self.stages.items():
            if self._frozen(name, self.epoch):
                module.eval()
        return self

    def param_groups(self, base_lr: float, epoch: int = 0) -> list[dict[str, Any]]:
        """Optimizer groups ``{"params": [...], "lr": base_lr * scale, "name": stage_name}``, one
        per stage that trains at ``epoch`` and has parameters (a shared parameter is listed once).
        """
        _require(_is_positive(base_lr), f"base_lr must be a finite number > 0, got {base_lr!r}")
        _require(_is_int(epoch, 0), f"epoch must be an int >= 0, got {epoch!r}")
        groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for name, module in self.stages.items():
            scale = self._rules[name].scale_at(epoch)
            params = [p for p in module.parameters() if id(p) not in seen]
            if scale is not None and params:
                seen.update(id(p) for p in params)
                groups.append({"params": params, "lr": base_lr * scale, "name": name})
        return groups

    def make_optimizer(
        self, base_lr: float, epoch: int = 0, optimizer_cls: type[Optimizer] = Adam, **kw: Any
    ) -> Optimizer:
        """Apply the rules for ``epoch``; return ``optimizer_cls(param_groups(...), **kw)``."""
        groups = self.param_groups(base_lr, epoch)
        _require(groups, f"no stage trains at epoch {epoch}; make one trainable or unfreeze one")
        self.apply_rules(epoch)
        return optimizer_cls(groups, **kw)

    def update_for_epoch(
        self, optimizer: Optimizer, epoch: int, base_lr: float | None = None
    ) -> list[str]:
        """Apply the rules for ``epoch`` and add a group to ``optimizer`` for each stage that
        trains now and has parameters the optimizer lacks; other groups and their state are left
        alone. Returns the names of the stages added. ``base_lr`` defaults to the current lr of a
        group made by :meth:`param_groups` divided by its stage's scale.
        """
        self.apply_rules(epoch)
        ours = [g for g in optimizer.param_groups if g.get("name") in self._rules]
        if base_lr is None:
            _require(ours, "optimizer has no group from Stack.param_groups; pass base_lr=")
            base_lr = ours[0]["lr"] / (self._rules[ours[0]["name"]].scale_at(epoch) or 1.0)
        seen = {id(p) for g in optimizer.param_groups for p in g["params"]}
        added = []
        for group in self.param_groups(base_lr, epoch):
            group["params"] = [p for p in group["params"] if id(p) not in seen]
            if group["params"]:
                optimizer.add_param_group(group)
                added.append(group["name"])
        return added

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters with ``requires_grad`` under the rules last applied."""
        return (p for p in self.parameters() if p.requires_grad)


class Tap(nn.Module):
    """Base of modules exposing an intermediate layer of a pretrained model (``self.source``)."""


class CnnTap(Tap):
    """``(B, C, H, W)`` images -> output of the tapped layer, e.g. ``(B, 128, H/8, W/8)``."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.layer = layer
        self.source = create_feature_extractor(model, return_nodes={layer: "out"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.source(x)["out"]


def tap_cnn(model: nn.Module, layer: str) -> CnnTap:
    """Tap graph node or submodule ``layer`` (e.g. ``"layer2"`` of a ResNet) of a CNN.

    The tap shares parameters with ``model``; the layers after ``layer`` are left out.
    """
    from torchvision.models.feature_extraction import get_graph_node_names

    train_nodes, eval_nodes = get_graph_node_names(model)
    nodes = [n for n in eval_nodes if n in set(train_nodes)]
    if not any(n == layer or n.startswith(layer + ".") for n in nodes):
        top = list(dict.fromkeys(n.split(".")[0] for n in nodes))[:12]
        raise ConfigError(
            f"no layer {layer!r} in {type(model).__name__}; pick one of e.g. {top} "
            "(torchvision.models.feature_extraction.get_graph_node_names lists them all)"
        )
    return CnnTap(model, layer)


class TransformerTap(Tap):
    """Dict of tokenized inputs (``input_ids`` ``(B, T)``, ``attention_mask`` ``(B, T)``, ...)
    -> pooled hidden state ``(B, hidden_size)`` of one layer of a Hugging Face model."""

    def __init__(self, model: nn.Module, layer: int | None, pooling: Literal["cls", "mean"]):
        super().__init__()
        self.source, self.layer, self.pooling = model, layer, pooling

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.layer is None:
            hidden = self.source(**inputs).last_hidden_state
        else:
            hidden = self.source(**inputs, output_hidden_states=True).hidden_states[self.layer]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = inputs.get("attention_mask")
        if mask is None:
            return hidden.mean(dim=1)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def tap_transformer(
    model: nn.Module, layer: int | None = None, pooling: Literal["cls", "mean"] = "cls"
) -> TransformerTap:
    """Tap ``hidden_states[layer]`` of a Hugging Face model (``None``: last hidden state; 0: the
    embedding output; negative indices count from the end), pooled by the CLS token (position 0)
    or by the attention-mask-weighted mean over tokens. Output ``(B, hidden_size)``."""
    _require(pooling in ("cls", "mean"), f"unknown pooling {pooling!r}; use 'cls' or 'mean'")
    if layer is not None:
        n = model.config.num_hidden_layers
        _require(
            _is_int(layer, -(n + 1)) and layer <= n,
            f"layer {layer!r} is out of range for a model with {n} hidden layers; use an int in "
            f"{-(n + 1)}..{n} (0 = embeddings, python-style negatives) or None for the last",
        )
    return TransformerTap(model, layer, pooling)
