"""The CUDA paths on one GPU, each beside a baseline measured in the same run.

    python benchmarks/bench_cuda.py                                 # on a machine with a GPU
    python benchmarks/bench_cuda.py --device cpu --quick --out /tmp/c  # the same code on CPU

Parts:

- ``adapter``: one adapter-training step of an env's transfer preset (bench_adapter_step's
  worker: a batch of 256 frames through ``Distiller.fit``, augmentations included) on all of the
  machine's CPU cores and on ``--device``, each in a fresh process.
- ``vision``: the vision stack with a frozen ResNet-50 trunk (random weights: its speed does not
  depend on them) tapped at layer3, the 3x3 conv adapter and the box + class heads, at 224x224
  in ``--precision`` with batches of 256:

  - reference: a plain torch loop of torchvision's whole ResNet-50 forward on a tensor already
    on the device (the computation the issue's 9.9k images/s on an H200 was measured on);
  - the stack's forward alone, in the same plain loop;
  - the stack end to end from uint8 frames in host memory: ``extract_features`` (the frozen
    trunk's feature cache), ``predict`` (decoding and NMS, detections copied back), and a
    training epoch on the cached features (frozen trunk) and through the whole network
    (``trunk_rule=scaled``).

Writes cuda.{json,md,png} to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, report_header, save_record  # noqa: E402

HERE = Path(__file__).resolve().parent
REFERENCE_H200 = 9900.0
"""Images/s of a frozen ResNet-50 + adapter at 224x224 in bf16, batch 256, in a plain torch loop on
an H200, as the vision issue quotes it (not measured here; the same run's reference row is)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="the device under test (cuda, cuda:N, cpu)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    p.add_argument(
        "--parts", nargs="+", default=["adapter", "vision"], choices=("adapter", "vision")
    )
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1"])
    p.add_argument("--steps", type=int, default=30, help="timed adapter batches per measurement")
    p.add_argument("--frames", type=int, default=1024, help="vision frames per timed pass")
    p.add_argument("--batch", type=int, default=256, help="vision batch size")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of each vision row")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the code")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--adapter-worker", metavar="ENV_ID", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.frames, args.batch, args.repeats = 3, 16, 8, 1
    return args


def gpu_info(device: str) -> dict:
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {"gpu": None}
    props = torch.cuda.get_device_properties(torch.device(device))
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "gpu_multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


# --------------------------------------------------------------------------- adapter step


def adapter_rows(args: argparse.Namespace) -> list[dict]:
    """Each env on the CPU (all usable cores) and on the device, a fresh process each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    for env_id in args.envs:
        for device in dict.fromkeys(("cpu", args.device)):
            cmd = [sys.executable, __file__, "--adapter-worker", env_id, "--device", device]
            cmd += ["--steps", str(args.steps), "--threads", str(cores)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, check=False)
            if out.returncode != 0:
                raise SystemExit(f"adapter step failed ({env_id} on {device}):\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"adapter {env_id} on {device}: {rows[-1]['step_ms']:.1f} ms a step", flush=True)
    return rows


# --------------------------------------------------------------------------- vision stack


def vision_rows(args: argparse.Namespace) -> list[dict]:
    import torch
    import torchvision

    from simtoreal.stacks.vision import (
        DetectorTrainer,
        VisionConfig,
        build_vision_stack,
        extract_features,
        predict,
        trunk_of,
    )
    from simtoreal.stacks.vision_data import world_set

    size = 64 if args.quick else 224
    backbone = "resnet18" if args.quick else "resnet50"
    config = VisionConfig(
        backbone=backbone,
        image_size=size,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch,
        epochs=1,
    )
    data = world_set(args.frames, 0, "randomized", 0.5, size)
    device = torch.device(args.device)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def rate(fn, images_per_call: int) -> dict:
        fn()  # warm-up (cuDNN picks its kernels)
        sync()
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            sync()
            seconds.append(time.perf_counter() - start)
        per_s = [images_per_call / s for s in seconds]
        return {"images_per_s": float(np.median(per_s)), "all": per_s}

    rows = []

    def record(name: str, kind: str, result: dict) -> None:
        rows.append({"name": name, "kind": kind, **result})
        print(f"vision {name}: {result['images_per_s']:.0f} images/s", flush=True)

    x = torch.rand(args.batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    calls = max(1, args.frames // args.batch)

    reference = getattr(torchvision.models, backbone)(weights=None)
    reference = reference.to(device).eval().to(memory_format=fmt)
    loop = plain_loop(reference, x, calls, args.precision)
    record(f"{backbone} whole forward, plain loop", "reference", rate(loop, calls * len(x)))
    del reference, loop

    stack, _ = build_vision_stack(config, num_classes=len(data.class_names), weights="random")
    stack.eval()
    loop = plain_loop(stack, x, calls, args.precision)
    name = "stack forward (layer3 + adapter + heads), plain loop"
    record(name, "plain", rate(loop, calls * len(x)))

    def features() -> None:
        extract_features(trunk_of(stack), data.images, batch=args.batch, precision=args.precision)

    record(
        "stack: frozen-trunk features from uint8 frames", "end to end", rate(features, len(data))
    )

    def detections() -> None:
        predict(stack, data.images, config, batch=args.batch)

    record(
        "stack: predict (decode + NMS) from uint8 frames", "end to end", rate(detections, len(data))
    )

    trainer = DetectorTrainer(stack, data, config, seed=0)
    trainer.features()
    record(
        "stack: training epoch, frozen trunk (cached features)",
        "end to end",
        rate(lambda: trainer.run_epoch(0), len(data)),
    )
    tuned = VisionConfig(**{**config.__dict__, "trunk_rule": "scaled"})
    stack, _ = build_vision_stack(tuned, num_classes=len(data.class_names), weights="random")
    trainer = DetectorTrainer(stack, data, tuned, seed=0)
    record(
        "stack: training epoch, trunk fine-tuned (full backward)",
        "end to end",
        rate(lambda: trainer.run_epoch(0), len(data)),
    )
    if device.type == "cuda":
        rows.append({"name": "peak memory", "kind": "memory",
                     "gib": torch.cuda.max_memory_allocated(device) / 2**30})  # fmt: skip
    return rows


def plain_loop(model, x, calls: int, precision: str):
    """``calls`` inference forwards of ``model`` on the ready tensor ``x``: no data path at all."""
    import torch

    @torch.inference_mode()
    def run() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for _ in range(calls):
                model(x)

    return run


# --------------------------------------------------------------------------- report


def write_report(out: Path, record: dict) -> None:
    args = record["settings"]
    lines = report_header(
        "CUDA paths: adapter training and the vision stack",
        record,
        f"; device {record['gpu'].get('gpu') or args['device']}",
    )
    if record.get("adapter"):
        lines += [
            "## Adapter-training step (batch 256 of the env's transfer preset)",
            "",
            "| env (frame, augmentations) | device | torch threads | step ms | augment ms | samples/s |",
            "|---|---|---|---|---|---|",
        ]
        for r in record["adapter"]:
            shape = "x".join(str(s) for s in r["frame_shape"])
            lines.append(
                f"| {r['env_id']} ({shape}, {' '.join(r['augment'])}) | {r['device']} "
                f"| {r['threads']} | {r['step_ms']:.1f} | {r['augment_ms']:.1f} "
                f"| {r['batch_size'] / r['step_ms'] * 1000:.0f} |"
            )
        lines.append("")
    if record.get("vision"):
        lines += [
            f"## Vision stack, {args['precision']}, batch {args['batch']}, "
            f"{args['frames']} frames a pass (median of {args['repeats']})",
            "",
            "| what | kind | images/s | vs reference | vs the stack's plain loop |",
            "|---|---|---|---|---|",
        ]
        rows = [r for r in record["vision"] if "images_per_s" in r]
        ref = next(r["images_per_s"] for r in rows if r["kind"] == "reference")
        plain = next(r["images_per_s"] for r in rows if r["kind"] == "plain")
        for r in rows:
            lines.append(
                f"| {r['name']} | {r['kind']} | {r['images_per_s']:.0f} "
                f"| {r['images_per_s'] / ref:.2f} | {r['images_per_s'] / plain:.2f} |"
            )
        for r in record["vision"]:
            if r["kind"] == "memory":
                lines += ["", f"Peak GPU memory allocated: {r['gib']:.1f} GiB."]
        lines += [
            "",
            f"The vision issue quotes {REFERENCE_H200:.0f} images/s for ResNet-50 + adapter in "
            "a plain loop on an H200; the reference row above is this run's own measurement.",
        ]
    (out / "cuda.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, record: dict) -> None:
    panels = [p for p in ("adapter", "vision") if record.get(p)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, part in zip(axes[0], panels, strict=True):
        if part == "adapter":
            rows = record["adapter"]
            labels = [f"{r['env_id']}\n{r['device']}" for r in rows]
            ax.bar(labels, [r["batch_size"] / r["step_ms"] * 1000 for r in rows])
            ax.set_ylabel("adapter samples/s")
        else:
            rows = [r for r in record["vision"] if "images_per_s" in r]
            ax.barh([r["name"] for r in rows], [r["images_per_s"] for r in rows])
            ax.set_xlabel("images/s")
            ax.invert_yaxis()
            ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "cuda.png", dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    if args.adapter_worker:
        from bench_adapter_step import worker

        print(json.dumps(worker(args.adapter_worker, args.steps, args.device, args.threads)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info(**gpu_info(args.device))
    parts = {}
    if "adapter" in args.parts:
        parts["adapter"] = adapter_rows(args)
    if "vision" in args.parts:
        parts["vision"] = vision_rows(args)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record = save_record(
        args.out / "cuda.json", info, settings=settings, gpu=gpu_info(args.device), **parts
    )
    write_report(args.out, record)
    plot(args.out, record)
    print((args.out / "cuda.md").read_text())


if __name__ == "__main__":
    main()
