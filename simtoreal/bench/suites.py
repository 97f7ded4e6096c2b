"""Suites of trials, declared as data.

A **trial** is one run of a library recipe (a teacher, a transfer, a stack, an env measurement)
with one config and one seed: a plain function of a config dict (:mod:`simtoreal.bench.trials`
maps each ``kind`` to its function), so the same trial runs in the local process pool or as a
Ray Tune trial. A **suite** is a named list of :class:`TrialSpec`: a name, a kind, a base config,
and the overrides that scale it to each budget (``quick``: a smoke-sized run of everything;
``full``: what the committed reports use).

Adding a suite is adding an entry to :data:`SUITES` (or a JSON file given with
``--suite-file``, same fields): no code path changes, as long as its trials use an existing kind.
A new kind of trial is one function in :mod:`simtoreal.bench.trials` and one line in its
``KINDS`` table. docs/bench.md walks through both.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simtoreal.errors import ConfigError

BUDGETS = ("quick", "full")
#: Seeds per trial when --seeds is not given.
DEFAULT_SEEDS = {"quick": 2, "full": 3}
#: The suites that ``all`` runs, in order.
ALL = ("envs", "teacher", "transfer", "stacks")
#: Kinds of search-space entries: ("loguniform", low, high), ("uniform", low, high),
#: ("randint", low, high) (high excluded) and ("choice", [values]).
SPACE_KINDS = ("loguniform", "uniform", "randint", "choice")


@dataclass(frozen=True)
class TrialSpec:
    """One declared trial of a suite, before budget and seed are chosen."""

    name: str
    """Row name in the report; unique within its suite; no '/'."""
    kind: str
    """Which trial function runs it (simtoreal.bench.trials.KINDS)."""
    config: dict[str, Any]
    """The trial function's config; the budget's overrides are merged into it (nested dicts
    merge key by key)."""
    quick: dict[str, Any] = field(default_factory=dict)
    """Overrides of the quick budget."""
    full: dict[str, Any] = field(default_factory=dict)
    """Overrides of the full budget."""
    group: str = "main"
    """Table of the report the trial's row goes in (e.g. headline, ablation)."""
    budgets: tuple[str, ...] = BUDGETS
    """Budgets that run this trial (e.g. only full for an expensive variant)."""
    needs_data: bool = False
    """The trial reads real data under --data; without --data it is skipped with a note."""

    def resolved(self, budget: str) -> dict[str, Any]:
        """The config of ``budget``: the base with that budget's overrides merged in."""
        return merged(self.config, getattr(self, budget))


@dataclass(frozen=True)
class SearchSpec:
    """A hyperparameter search over one trial of a suite (``--search``, Ray Tune + ASHA)."""

    base: str
    """Name of the suite's trial whose config the samples start from."""
    space: dict[str, tuple]
    """Dotted config key -> (kind, ...): see SPACE_KINDS."""
    metric: str
    """Key of the trial's progress lines (its run's metrics.jsonl) the scheduler compares."""
    mode: str
    """max or min."""
    objective: str
    """Metric of the finished trial's summary the report ranks samples by (higher is better)."""
    samples: int = 8
    """Configs sampled when --samples is not given."""


@dataclass(frozen=True)
class Suite:
    description: str
    trials: tuple[TrialSpec, ...]
    search: SearchSpec | None = None


@dataclass(frozen=True)
class Trial:
    """One trial to run: a spec resolved for a budget and a seed."""

    suite: str
    name: str
    group: str
    kind: str
    budget: str
    seed: int
    config: dict[str, Any]
    needs_data: bool = False

    @property
    def config_hash(self) -> str:
        """First 10 hex digits of the SHA-256 of the kind and config (canonical JSON)."""
        blob = json.dumps({"kind": self.kind, "config": self.config}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def trial_id(self) -> str:
        """``suite/name/config-hash/s<seed>``: the key results.jsonl is resumed by."""
        return f"{self.suite}/{self.name}/{self.config_hash}/s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(**data)


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top; nested dicts are merged key by key (copies)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------------
# The suites
# ---------------------------------------------------------------------------------------------

_TEACHER_QUICK = {"total_steps": 30_000, "eval_every": 5_000}
_TRANSFER_QUICK = {
    "frames": 24_000,
    "eval_episodes": 200,
    "severities": [0.0, 0.25, 0.5, 0.75, 1.0],
    "robustness_episodes": 40,
    "baseline_wall_multiple": 1.0,
}
_VISION_QUICK = {"train_frames": 160, "eval_frames": 48, "epochs": 3, "source_frames": 160}
_VISION_FULL = {"train_frames": 800, "eval_frames": 120, "epochs": 8, "source_frames": 1200}

SUITES: dict[str, Suite] = {
    "envs": Suite(
        "Throughput of the batched grid world (state steps/s, image frames/s per domain) and of "
        "MiniGrid's Empty-8x8 on the same machine (benchmarks/bench_envs.py as a suite).",
        (
            TrialSpec(
                "throughput",
                "envs",
                {
                    "seconds": 3.0,
                    "num_envs": 4096,
                    "image_envs": 1024,
                    "severity": 0.5,
                    "minigrid": True,
                },
                quick={"seconds": 1.0, "num_envs": 2048, "image_envs": 512},
            ),
        ),
    ),
    "teacher": Suite(
        "Teacher training (python -m simtoreal.train grid's recipe): test success, steps, wall "
        "time and the validation curve, per world and algorithm.",
        (
            TrialSpec(
                "PPO, 8x8 world (default)",
                "teacher",
                {"env_id": "simtoreal/GridWorld-v0", "train": {}},
                quick={"train": _TEACHER_QUICK},
            ),
            TrialSpec(
                "PPO, obstacle world (preset)",
                "teacher",
                {"env_id": "simtoreal/GridWorldObstacles-v0", "train": {}},
                quick={"train": {"total_steps": 60_000}},
            ),
            TrialSpec(
                "A2C, 8x8 world",
                "teacher",
                {"env_id": "simtoreal/GridWorld-v0", "train": {"algo": "a2c"}},
                budgets=("full",),
            ),
        ),
        search=SearchSpec(
            base="PPO, 8x8 world (default)",
            space={
                "train.ppo.learning_rate": ("loguniform", 1e-3, 3e-2),
                "train.ppo.n_epochs": ("choice", [2, 4, 8]),
                "train.n_envs": ("choice", [64, 128, 256]),
            },
            metric="success_rate",
            mode="max",
            objective="success",
        ),
    ),
    "transfer": Suite(
        "Zero-shot transfer to the held-out real world (python -m simtoreal.transfer's recipe, "
        "one teacher per seed): success by severity, recovered share, the shift suite, the "
        "PPO-from-pixels baseline, and the ablation read on the validation world "
        "(benchmarks/bench_transfer.py as a suite).",
        (
            TrialSpec(
                "default (both losses, offline + DAgger)",
                "transfer",
                {"teacher": {}, "transfer": {"baseline": True, "baseline_wall_multiple": 2.0}},
                quick={"teacher": _TEACHER_QUICK, "transfer": _TRANSFER_QUICK},
                group="headline",
            ),
            TrialSpec(
                "NatureCNN pixel baseline",
                "transfer",
                {
                    "teacher": {},
                    "transfer": {
                        "baseline": True,
                        "robustness_episodes": 0,
                        "baseline_extractor": "nature_cnn",
                        "baseline_wall_multiple": 2.0,
                    },
                },
                group="headline",
                budgets=("full",),
            ),
            TrialSpec(
                "offline only",
                "transfer",
                {
                    "teacher": {},
                    "transfer": {
                        "dagger_share": 0.0,
                        "severities": [0.5],
                        "robustness_episodes": 0,
                    },
                },
                quick={
                    "teacher": _TEACHER_QUICK,
                    "transfer": {"frames": 24_000, "eval_episodes": 200},
                },
                group="ablation",
            ),
            TrialSpec(
                "action loss only",
                "transfer",
                {
                    "teacher": {},
                    "transfer": {"loss": "action", "severities": [0.5], "robustness_episodes": 0},
                },
                quick={
                    "teacher": _TEACHER_QUICK,
                    "transfer": {"frames": 24_000, "eval_episodes": 200},
                },
                group="ablation",
            ),
            TrialSpec(
                "flatten adapter (the reference's pooling)",
                "transfer",
                {
                    "teacher": {},
                    "transfer": {
                        "channels": [16, 32],
                        "kernels": [4, 3],
                        "strides": [4, 2],
                        "pool": "flatten",
                        "severities": [0.5],
                        "robustness_episodes": 0,
                    },
                },
                group="ablation",
                budgets=("full",),
            ),
        ),
        search=SearchSpec(
            base="offline only",
            space={
                "transfer.lr": ("loguniform", 5e-4, 5e-3),
                "transfer.batch_size": ("choice", [128, 256, 512]),
                "transfer.epochs": ("choice", [1, 2, 4]),
            },
            metric="loss",
            mode="min",
            objective="validation_success",
        ),
    ),
    "stacks": Suite(
        "The companion stacks: the vision detector per trunk (mAP per domain) and the NLP "
        "classifier on real sentiment data (needs --data; benchmarks/bench_vision.py and "
        "bench_nlp.py as a suite).",
        (
            TrialSpec(
                "vision: source-task ResNet-18, frozen",
                "vision",
                {"weights": "source"},
                quick=_VISION_QUICK,
                full=_VISION_FULL,
                group="vision",
            ),
            TrialSpec(
                "vision: random ResNet-18, frozen (floor)",
                "vision",
                {"weights": "random"},
                quick=_VISION_QUICK,
                full=_VISION_FULL,
                group="vision",
            ),
            TrialSpec(
                "vision: ImageNet EfficientNet-Lite0, frozen",
                "vision",
                {"weights": "imagenet", "backbone": "efficientnet_lite0"},
                full=_VISION_FULL,
                group="vision",
                budgets=("full",),
            ),
            TrialSpec(
                "nlp: SST-2, last layer CLS (reference)",
                "nlp",
                {"data": "sst2", "layer": -1, "pooling": "cls", "max_train": 20_000},
                quick={"max_train": 1_000, "val_split": "none", "epochs": 10},
                group="nlp",
                needs_data=True,
            ),
            TrialSpec(
                "nlp: SST-2, best layer (auto)",
                "nlp",
                {"data": "sst2", "layer": "auto", "pooling": "auto", "max_train": 20_000},
                quick={"max_train": 1_000, "val_split": "none", "epochs": 10},
                group="nlp",
                needs_data=True,
            ),
            TrialSpec(
                "nlp: TweetEval, best layer (auto)",
                "nlp",
                {
                    "data": "tweeteval-sentiment",
                    "train_split": "val",
                    "val_split": "none",
                    "layer": "auto",
                    "pooling": "auto",
                },
                group="nlp",
                needs_data=True,
                budgets=("full",),
            ),
        ),
    ),
}


# ---------------------------------------------------------------------------------------------
# Choosing and expanding suites
# ---------------------------------------------------------------------------------------------


def suite_names(name: str, registry: dict[str, Suite]) -> list[str]:
    """The suites ``name`` stands for (``all`` is every suite of :data:`ALL`)."""
    if name == "all":
        return list(ALL)
    if name not in registry:
        raise ConfigError(
            f"unknown suite {name!r}: use one of {', '.join([*registry, 'all'])} "
            "(or declare it in a --suite-file)."
        )
    return [name]


def expand(names: list[str], registry: dict[str, Suite], budget: str, seeds: int) -> list[Trial]:
    """Every trial of the suites ``names`` in ``budget``, for seeds 0..seeds-1."""
    check_budget_and_seeds(budget, seeds)
    trials = []
    for suite in names:
        for spec in registry[suite].trials:
            if budget not in spec.budgets:
                continue
            config = spec.resolved(budget)
            trials += [
                Trial(
                    suite, spec.name, spec.group, spec.kind, budget, seed, config, spec.needs_data
                )
                for seed in range(seeds)
            ]
    return trials


def check_budget_and_seeds(budget: str, seeds: int) -> None:
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}: use quick or full.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 100:
        raise ConfigError(
            f"--seeds {seeds}: use an integer from 1 to 100 (seeds are run seeds "
            "0..N-1, each with its own training worlds)."
        )


def set_dotted(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``value`` at the dotted ``key`` (``train.ppo.n_epochs``)."""
    *parents, leaf = key.split(".")
    nested: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        nested = {parent: nested}
    return merged(config, nested)


# ---------------------------------------------------------------------------------------------
# Suite files (JSON, the same fields as the dataclasses above)
# ---------------------------------------------------------------------------------------------


def load_suite_file(path: str | Path) -> dict[str, Suite]:
    """Suites declared in a JSON file: ``{"suites": {NAME: {"description": ..., "trials":
    [{"name", "kind", "config", "quick", "full", "group", "budgets", "needs_data"}], "search":
    {...}}}}``. Every field is checked, and the error names the file and the entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"--suite-file {path} does not exist: check the path.") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"--suite-file {path} is not valid JSON: {err}.") from err
    suites = data.get("suites") if isinstance(data, dict) else None
    if not isinstance(suites, dict) or not suites:
        raise ConfigError(
            f'{path}: expected {{"suites": {{NAME: {{...}}}}}} with one suite or more.'
        )
    return {
        name: _suite_from_dict(body, f"{path}: suite {name!r}") for name, body in suites.items()
    }


def _suite_from_dict(body: Any, where: str) -> Suite:
    if not isinstance(body, dict) or not isinstance(body.get("trials"), list):
        raise ConfigError(f"{where}: expected an object with a list of 'trials'.")
    trials = []
    for i, t in enumerate(body["trials"]):
        trials.append(_build(TrialSpec, t, f"{where}, trial {i}"))
    search = body.get("search")
    if search is not None:
        search = _build(SearchSpec, search, f"{where}, search")
        search = SearchSpec(
            **{**asdict(search), "space": {k: tuple(v) for k, v in search.space.items()}}
        )
    suite = Suite(str(body.get("description", "")), tuple(trials), search)
    check_suite(suite, where)
    return suite


def _build(cls: type, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object.")
    valid = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(valid)}.")
    if "budgets" in data:
        data = {**data, "budgets": tuple(data["budgets"])}
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}.") from err


def check_suite(suite: Suite, where: str) -> None:
    """Refuse a suite whose trials name unknown kinds or budgets, or repeat a name."""
    from simtoreal.bench.trials import KINDS

    names = [t.name for t in suite.trials]
    for spec in suite.trials:
        if spec.kind not in KINDS:
            raise ConfigError(
                f"{where}: trial {spec.name!r} has unknown kind {spec.kind!r}; "
                f"use one of {', '.join(KINDS)}."
            )
        if not spec.name or "/" in spec.name or names.count(spec.name) > 1:
            raise ConfigError(
                f"{where}: trial name {spec.name!r} must be unique, non-empty and without '/'."
            )
        if not set(spec.budgets) <= set(BUDGETS) or not isinstance(spec.config, dict):
            raise ConfigError(
                f"{where}: trial {spec.name!r} needs a config object and budgets among {BUDGETS}."
            )
    if suite.search is not None:
        check_search(suite.search, names, where)


def check_search(search: SearchSpec, names: list[str], where: str) -> None:
    if search.base not in names:
        raise ConfigError(f"{where}: search base {search.base!r} is not a trial of the suite.")
    if search.mode not in ("max", "min"):
        raise ConfigError(f"{where}: search mode {search.mode!r}: use max or min.")
    for key, entry in search.space.items():
        if not entry or entry[0] not in SPACE_KINDS:
            raise ConfigError(
                f"{where}: search space entry {key!r} = {entry!r}: start it with "
                f"one of {', '.join(SPACE_KINDS)}."
            )
