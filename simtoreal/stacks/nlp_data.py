"""Labelled text for the NLP stack: files in, ``TextSplit`` objects out.

Layouts read by :func:`load_splits` from ``--data PATH``:

* a **file** (``.csv``, ``.tsv``, ``.jsonl``): one table, split stratified into train/val/test;
* a **directory of tables**, one per split, named by split (GLUE style: ``train.tsv``,
  ``dev.tsv``, ``test.tsv``; ``.csv`` and ``.jsonl`` too);
* a **directory of parallel line files** (TweetEval style): ``<split>_text.txt`` and
  ``<split>_labels.txt`` aligned line by line, with an optional ``mapping.txt`` (``id<TAB>name``);
* a Hugging Face ``datasets.DatasetDict`` saved with ``save_to_disk`` (needs ``datasets``).

Labels are kept as strings; a :class:`LabelMap` turns them into class indices and is saved with
the model, so predictions come back as the names the user's data used.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simtoreal.errors import DataError

TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl")
SPLIT_ALIASES = {"val": ("val", "dev", "validation"), "train": ("train",), "test": ("test",)}


@dataclass
class TextSplit:
    """Texts and their string labels, aligned. ``source`` says where they came from."""

    texts: list[str]
    labels: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int] | np.ndarray, source: str | None = None) -> TextSplit:
        """The rows at ``index`` (in that order)."""
        return TextSplit(
            [self.texts[i] for i in index],
            [self.labels[i] for i in index],
            source or f"{self.source} (subset of {len(index)})",
        )


@dataclass(frozen=True)
class LabelMap:
    """Class index <-> label name. ``names[i]`` is the label of class ``i``."""

    names: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Sequence[str], mapping: dict[str, str] | None = None) -> LabelMap:
        """Classes sorted (numerically when all labels are integers); ``mapping`` renames."""
        unique = sorted(set(labels), key=lambda s: (0, int(s), "") if _is_int(s) else (1, 0, s))
        return cls(tuple((mapping or {}).get(u, u) for u in unique))

    def encode(self, labels: Sequence[str], where: str = "labels") -> np.ndarray:
        """Label names -> class indices ``(N,)`` int64; unknown labels are refused."""
        index = {name: i for i, name in enumerate(self.names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DataError(
                f"{where}: label(s) {unknown[:5]} are not among the classes the model was "
                f"trained on {list(self.names)}; relabel those rows or train a model that has them."
            )
        return np.array([index[label] for label in labels], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict) -> LabelMap:
        return cls(tuple(data["names"]))


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()


# ---------------------------------------------------------------------------------------------
# Reading one table or one pair of line files
# ---------------------------------------------------------------------------------------------


def read_table(path: str | Path, text_column: str, label_column: str) -> TextSplit:
    """Rows of a CSV/TSV (with a header) or JSONL file; columns named by ``text_column`` and
    ``label_column``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist: check --data.")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in _lines(path) if line.strip()]
        columns = set(rows[0]) if rows else set()
    else:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE
                                    if delimiter == "\t" else csv.QUOTE_MINIMAL)  # fmt: skip
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DataError(
            f"{path} has no column(s) {missing}; its columns are {sorted(columns)}. "
            "Name the right ones with --text-column and --label-column."
        )
    texts = [str(r[text_column] if r[text_column] is not None else "") for r in rows]
    labels = [str(r[label_column]).strip() for r in rows]
    return TextSplit(texts, labels, str(path))


def read_line_files(text_path: Path, label_path: Path) -> TextSplit:
    """Two aligned files, one text and one label per line (TweetEval's layout)."""
    texts, labels = _lines(text_path), [s.strip() for s in _lines(label_path)]
    if len(texts) != len(labels):
        raise DataError(
            f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}: the files "
            "must be aligned, one text and one label per line."
        )
    return TextSplit(texts, labels, str(text_path))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def read_mapping(directory: Path) -> dict[str, str]:
    """``mapping.txt`` (``id<TAB>name`` per line) if present, else ``{}``."""
    path = directory / "mapping.txt"
    if not path.is_file():
        return {}
    pairs = (line.split("\t", 1) for line in _lines(path) if "\t" in line)
    return {k.strip(): v.strip() for k, v in pairs}


# ---------------------------------------------------------------------------------------------
# A whole data set: named splits
# ---------------------------------------------------------------------------------------------


def find_split(directory: Path, name: str) -> Path | tuple[Path, Path] | None:
    """The file(s) holding split ``name`` (or one of its aliases) in ``directory``, or None."""
    for alias in SPLIT_ALIASES.get(name, (name,)):
        for suffix in TABLE_SUFFIXES:
            if (directory / f"{alias}{suffix}").is_file():
                return directory / f"{alias}{suffix}"
        text, labels = directory / f"{alias}_text.txt", directory / f"{alias}_labels.txt"
        if text.is_file() and labels.is_file():
            return text, labels
    return None


def read_split(directory: Path, name: str, text_column: str, label_column: str) -> TextSplit | None:
    """Split ``name`` of a directory data set, or None when it has no such split."""
    if (directory / "dataset_dict.json").is_file():
        return _read_hf_split(directory, name, text_column, label_column)
    found = find_split(directory, name)
    if found is None:
        return None
    if isinstance(found, tuple):
        return read_line_files(*found)
    return read_table(found, text_column, label_column)


def _read_hf_split(
    directory: Path, name: str, text_column: str, label_column: str
) -> TextSplit | None:
    try:
        import datasets
    except ImportError as err:
        raise DataError(
            f"{directory} is a Hugging Face dataset saved with save_to_disk: "
            "pip install datasets to read it, or export its splits to TSV/JSONL files."
        ) from err
    dataset = datasets.load_from_disk(str(directory))
    names = [a for a in SPLIT_ALIASES.get(name, (name,)) if a in dataset]
    if not names:
        return None
    split = dataset[names[0]]
    missing = [c for c in (text_column, label_column) if c not in split.column_names]
    if missing:
        raise DataError(
            f"{directory} split {names[0]!r} has no column(s) {missing}; its columns are "
            f"{split.column_names}. Name them with --text-column and --label-column."
        )
    texts = [str(t) for t in split[text_column]]
    labels = [str(v) for v in split[label_column]]
    return TextSplit(texts, labels, f"{directory}[{names[0]}]")


def stratified_split(
    labels: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Row indices cut into ``len(fractions)`` parts, each holding about ``fraction`` of every
    class (the last part takes the remainder). Shapes ``(n_i,)``, sorted."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in fractions]
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(rows)).astype(int)
        for part, chunk in zip(parts, np.split(rows, cuts), strict=True):
            part.extend(chunk.tolist())
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def check_texts(split: TextSplit, drop_empty: bool) -> TextSplit:
    """Refuse (or with ``drop_empty`` drop) rows whose text is empty or only white space."""
    empty = [i for i, t in enumerate(split.texts) if not t.strip()]
    if not empty:
        return split
    if not drop_empty:
        rows = ", ".join(str(i + 1) for i in empty[:5])
        raise DataError(
            f"{split.source}: {len(empty)} empty text(s) (data row(s) {rows}"
            f"{', ...' if len(empty) > 5 else ''}); remove them or pass --drop-empty."
        )
    keep = [i for i in range(len(split)) if i not in set(empty)]
    return split.subset(keep, source=split.source)


# ---------------------------------------------------------------------------------------------
# --data PATH -> train / val / test
# ---------------------------------------------------------------------------------------------


@dataclass
class Splits:
    """The splits a run uses. ``val`` None: layers and epochs are chosen by cross-validation on
    ``train``; ``test`` None: nothing is reported on held-out data."""

    train: TextSplit
    val: TextSplit | None
    test: TextSplit | None
    label_map: LabelMap
    layout: str


def load_splits(
    data: str | Path,
    *,
    train_split: str = "train",
    val_split: str = "auto",
    test_split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
    holdout_above: int = 5000,
    seed: int = 0,
    drop_empty: bool = False,
) -> Splits:
    """Read ``data`` (see the module docstring for the layouts) into train / val / test.

    ``val_split="auto"`` uses a ``val``/``dev``/``validation`` split when there is one; otherwise a
    stratified 10% of a training split of ``holdout_above`` rows or more is held out, and a smaller
    one is left whole for cross-validation. ``"none"`` never uses a validation split. A single file
    is cut stratified 80/10/10 (90/0/10 with ``val_split="none"``).
    """
    path = Path(data)
    if not path.exists():
        raise DataError(f"--data {path} does not exist: pass a data file or directory.")
    if path.is_file():
        table = read_table(path, text_column, label_column)
        fractions = (0.9, 0.0, 0.1) if val_split == "none" else (0.8, 0.1, 0.1)
        train, val, test = (
            table.subset(i) for i in stratified_split(table.labels, fractions, seed)
        )
        val = val if len(val) else None
        layout, mapping = (
            f"one file, stratified {'/'.join(str(int(f * 100)) for f in fractions)}",
            {},
        )
    else:
        mapping = read_mapping(path)
        train = read_split(path, train_split, text_column, label_column)
        if train is None:
            raise DataError(
                f"{path} has no {train_split!r} split; name one of its splits with --train-split "
                f"(found: {sorted(_split_names(path)) or 'nothing readable'})."
            )
        val = _optional_split(path, val_split, text_column, label_column, default="val")
        test = _optional_split(path, test_split, text_column, label_column, default="test")
        if val is not None and val.source == train.source:
            val = None  # e.g. --train-split val with val_split auto: never validate on train
        layout = f"directory, splits train={train_split} val={val_split} test={test_split}"
        if val is None and val_split == "auto" and len(train) >= holdout_above:
            keep, held = stratified_split(train.labels, (0.9, 0.1), seed)
            train, val = train.subset(keep), train.subset(held, f"{train.source} (10% held out)")
    splits = [s and _renamed(check_texts(s, drop_empty), mapping) for s in (train, val, test)]
    label_map = _label_map(splits[0].labels, mapping)
    for split in splits[1:]:
        if split is not None:
            label_map.encode(split.labels, where=split.source)
    return Splits(*splits, label_map=label_map, layout=layout)


def _optional_split(
    path: Path, name: str, text_column: str, label_column: str, default: str
) -> TextSplit | None:
    if name == "none":
        return None
    split = read_split(path, default if name == "auto" else name, text_column, label_column)
    if split is None and name != "auto":
        raise DataError(
            f"{path} has no {name!r} split (found: {sorted(_split_names(path))}); name another or "
            "pass 'none'."
        )
    return split


def _split_names(path: Path) -> set[str]:
    names = {p.stem for p in path.iterdir() if p.suffix in TABLE_SUFFIXES}
    return names | {p.name[: -len("_text.txt")] for p in path.glob("*_text.txt")}


def _renamed(split: TextSplit, mapping: dict[str, str]) -> TextSplit:
    if mapping:
        split.labels = [mapping.get(label, label) for label in split.labels]
    return split


def _label_map(train_labels: list[str], mapping: dict[str, str]) -> LabelMap:
    """Classes in ``mapping.txt`` order when there is one, else sorted training labels."""
    present = set(train_labels)
    if mapping:
        ordered = [name for name in mapping.values() if name in present]
        rest = sorted(present - set(ordered))
        return LabelMap(tuple(ordered + rest))
    return LabelMap.from_labels(train_labels)
