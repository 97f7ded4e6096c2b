"""Tests for simtoreal.core: train rules, the Stack, optimizer groups and layer taps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simtoreal.core import Stack, Stage, TrainRule, tap_cnn, tap_transformer
from simtoreal.errors import ConfigError

BASE_LR = 1e-2


def make_stack(source_rule: TrainRule | None = None) -> Stack:
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
    return Stack(
        [
            Stage("source", source, source_rule or TrainRule.frozen()),
            Stage("adapter", nn.Linear(8, 8), TrainRule.trainable()),
            Stage("head", nn.Linear(8, 3), TrainRule.scaled(0.1)),
        ]
    )


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm running stats included), cloned."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def adam_steps(stack: Stack, opt: torch.optim.Optimizer, n: int = 3) -> None:
    for _ in range(n):
        x, y = torch.randn(16, 6), torch.randn(16, 3)
        opt.zero_grad()
        nn.functional.mse_loss(stack(x), y).backward()
        opt.step()


def group_lrs(opt: torch.optim.Optimizer) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in opt.param_groups}


def test_frozen_stage_and_batchnorm_stats_do_not_change_while_others_train():
    stack = make_stack()
    stack.train()
    assert stack.training and stack["adapter"].training
    assert not stack["source"].training  # BatchNorm/dropout of the frozen source stay in eval
    assert not any(p.requires_grad for p in stack["source"].parameters())
    before = {name: snapshot(stack[name]) for name in stack.names}
    assert stack["source"][1].num_batches_tracked.item() == 0

    opt = stack.make_optimizer(BASE_LR)
    stack.train()  # calling train() again must not wake the frozen stage up
    assert not stack["source"].training
    adam_steps(stack, opt)

    for key, value in snapshot(stack["source"]).items():
        assert torch.equal(value, before["source"][key]), key
    for name in ("adapter", "head"):
        after = snapshot(stack[name])
        assert not torch.equal(after["weight"], before[name]["weight"]), name
    assert group_lrs(opt) == {"adapter": BASE_LR, "head": pytest.approx(BASE_LR * 0.1)}
    source_ids = {id(p) for p in stack["source"].parameters()}
    assert source_ids.isdisjoint(id(p) for g in opt.param_groups for p in g["params"])
    trainable = {id(p) for p in stack.trainable_parameters()}
    assert trainable == {id(p) for n in ("adapter", "head") for p in stack[n].parameters()}


def test_forward_runs_stages_in_order():
    stack = make_stack().eval()
    x = torch.randn(4, 6)
    expected = stack["head"](stack["adapter"](stack["source"](x)))
    assert stack.names == ["source", "adapter", "head"]
    assert torch.equal(stack(x), expected)
    assert stack(x).shape == (4, 3)


def test_unfreeze_after_adds_group_and_keeps_other_optimizer_state():
    stack = make_stack(TrainRule.frozen(unfreeze_after=2, lr_scale=0.5))
    stack.train()
    opt = stack.make_optimizer(BASE_LR, epoch=0)
    assert set(group_lrs(opt)) == {"adapter", "head"}
    assert not stack["source"].training
    adam_steps(stack, opt, n=2)
    adapter_w = stack["adapter"].weight
    exp_avg = opt.state[adapter_w]["exp_avg"].clone()
    assert int(opt.state[adapter_w]["step"]) == 2

    assert stack.update_for_epoch(opt, 1) == []
    assert stack.update_for_epoch(opt, 2) == ["source"]
    assert group_lrs(opt)["source"] == pytest.approx(BASE_LR * 0.5)
    assert stack["source"].training
    assert all(p.requires_grad for p in stack["source"].parameters())
    # the existing groups' Adam state is untouched by adding a group
    assert torch.equal(opt.state[adapter_w]["exp_avg"], exp_avg)
    assert int(opt.state[adapter_w]["step"]) == 2

    before = snapshot(stack["source"])
    adam_steps(stack, opt, n=1)
    assert not torch.equal(stack["source"][0].weight, before["0.weight"])
    assert int(opt.state[adapter_w]["step"]) == 3  # continued, not reset
    assert stack.update_for_epoch(opt, 3) == []  # no duplicate group
    assert len(opt.param_groups) == 3


def test_param_groups_follow_epoch_and_make_optimizer_accepts_other_optimizers():
    stack = make_stack(TrainRule.frozen(unfreeze_after=1, lr_scale=0.25))
    assert [g["name"] for g in stack.param_groups(1.0, epoch=0)] == ["adapter", "head"]
    groups = stack.param_groups(1.0, epoch=1)
    assert {g["name"]: g["lr"] for g in groups} == {"source": 0.25, "adapter": 1.0, "head": 0.1}
    opt = stack.make_optimizer(0.5, epoch=1, optimizer_cls=torch.optim.SGD, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD)
    assert group_lrs(opt) == {"source": 0.125, "adapter": 0.5, "head": pytest.approx(0.05)}


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: TrainRule("warm"), "use one of"),
        (lambda: TrainRule.scaled(0.0), "lr_scale must be a finite number > 0"),
        (lambda: TrainRule.scaled(-1.0), "lr_scale must be a finite number > 0"),
        (lambda: TrainRule.scaled(float("nan")), "lr_scale must be a finite number > 0"),
        (lambda: TrainRule("trainable", lr_scale=0.1), "use TrainRule.scaled"),
        (lambda: TrainRule("scaled", 0.1, unfreeze_after=2), "needs mode='frozen'"),
        (lambda: TrainRule.frozen(unfreeze_after=-1), "int epoch >= 0"),
        (
            lambda: Stack(
                [Stage("a", nn.Linear(2, 2), TrainRule()), Stage("a", nn.ReLU(), TrainRule())]
            ),
            "duplicate stage name 'a'",
        ),
        (lambda: Stack([]), "at least one Stage"),
        (
            lambda: Stack([Stage("a", nn.Linear(2, 2), TrainRule.frozen())]).make_optimizer(0.1),
            "no stage trains at epoch 0",
        ),
        (lambda: make_stack().param_groups(0.0), "base_lr must be"),
        (lambda: make_stack().apply_rules(-1), "epoch must be an int >= 0"),
    ],
)
def test_bad_config_raises_config_error_with_fix(make, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        make()


def test_unknown_stage_name_lookup_lists_stages():
    with pytest.raises(KeyError, match="stages are"):
        make_stack()["missing"]


def tiny_resnet() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def test_tap_cnn_returns_layer_output_and_shares_weights():
    model = tiny_resnet()
    tap = tap_cnn(model, "layer2").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = tap(x)
        m = model
        expected = m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 128, 8, 8)
    assert torch.equal(out, expected)
    assert {p.data_ptr() for p in tap.parameters()} <= {p.data_ptr() for p in model.parameters()}


def test_tap_cnn_as_frozen_source_of_a_stack_keeps_batchnorm_stats():
    model = tiny_resnet()
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 4))
    stack = Stack(
        [
            Stage("source", tap_cnn(model, "layer1"), TrainRule.frozen()),
            Stage("head", head, TrainRule.trainable()),
        ]
    ).train()
    running_mean = model.bn1.running_mean.clone()
    opt = stack.make_optimizer(1e-3)
    loss = stack(torch.randn(2, 3, 32, 32)).square().mean()
    loss.backward()
    opt.step()
    assert torch.equal(model.bn1.running_mean, running_mean)
    assert model.conv1.weight.grad is None


def test_tap_cnn_unknown_layer_lists_valid_names():
    with pytest.raises(ConfigError, match="no layer 'layer9'") as err:
        tap_cnn(tiny_resnet(), "layer9")
    assert "layer2" in str(err.value) and "conv1" in str(err.value)


@pytest.fixture(scope="module")
def bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=100,
    )
    return transformers.BertModel(config).eval()


def tokens() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 100, (3, 7), generator=g)
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 4:] = 0
    attention_mask[2, 2:] = 0
    input_ids[attention_mask == 0] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@torch.no_grad()
def test_tap_transformer_cls_selects_the_hidden_state_of_the_layer(bert):
    inputs = tokens()
    hidden = bert(**inputs, output_hidden_states=True).hidden_states
    out = tap_transformer(bert, layer=1, pooling="cls")(inputs)
    assert out.shape == (3, 32)
    assert torch.equal(out, hidden[1][:, 0])
    last = tap_transformer(bert)(inputs)
    assert torch.allclose(last, hidden[-1][:, 0])
    assert torch.equal(tap_transformer(bert, layer=-3)(inputs), hidden[0][:, 0])


@torch.no_grad()
def test_tap_transformer_mean_pooling_ignores_padding(bert):
    inputs = tokens()
    tap = tap_transformer(bert, layer=1, pooling="mean")
    out = tap(inputs)
    assert out.shape == (3, 32)
    hidden = bert(**inputs, output_hidden_states=True).hidden_states[1]
    assert torch.allclose(out[1], hidden[1, :4].mean(0), atol=1e-6)
    assert torch.allclose(out[2], hidden[2, :2].mean(0), atol=1e-6)

    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][changed["attention_mask"] == 0] = 42
    assert not torch.equal(changed["input_ids"], inputs["input_ids"])
    assert torch.allclose(tap(changed), out, atol=1e-6)


def test_tap_transformer_in_a_stack_takes_the_tokenized_dict(bert):
    stack = Stack(
        [
            Stage("source", tap_transformer(bert, layer=2, pooling="mean"), TrainRule.frozen()),
            Stage("head", nn.Linear(32, 5), TrainRule.trainable()),
        ]
    ).train()
    assert not bert.training  # dropout in the frozen encoder stays off
    assert stack(tokens()).shape == (3, 5)
    assert [g["name"] for g in stack.param_groups(1e-3)] == ["head"]


@pytest.mark.parametrize("layer", [3, -4, 1.0])
def test_tap_transformer_bad_layer_names_valid_range(bert, layer):
    with pytest.raises(ConfigError, match=r"use an int in -3\.\.2"):
        tap_transformer(bert, layer=layer)


def test_tap_transformer_bad_pooling(bert):
    with pytest.raises(ConfigError, match="use 'cls' or 'mean'"):
        tap_transformer(bert, pooling="max")  # type: ignore[arg-type]
