"""Pruning inside the block (``placement="attention"``) and in several stages (``layers=[...]``):
dense equals timm, batched equals alone, MACs equal an analytic count and PyTorch's counter,
bad layers/placements/values are refused naming the key, training distils every stage."""

import itertools

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.utils.flop_counter import FlopCounterMode

import vitaccel.prune as prune
from vitaccel.configtools import from_dict
from vitaccel.errors import ConfigError
from vitaccel.measure import count_macs, macs
from vitaccel.train.losses import stage_distillation, token_distillation

DIM, DEPTH, MLP, PATCHES, CLASSES = 64, 6, 256, 64, 10


def peaked_vit(**kwargs) -> VisionTransformer:
    """Small random ViT with sharp attention, so that images keep different token counts."""
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=4, embed_dim=DIM, depth=DEPTH, num_heads=4, num_classes=CLASSES)
    model = VisionTransformer(**{**args, **kwargs}).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight[:2 * DIM].mul_(10)
    return model


SETTINGS = [  # (layers, placement)
    ([2], "attention"),
    ([2, 4], "block"),
    ([1, 3, 5], "attention"),
]
RULES = [("topk", 0.5), ("value", 1.0), ("mass", 0.7)]


@pytest.mark.parametrize("layers,placement", SETTINGS)
def test_dense_equals_unpatched(layers, placement):
    model = peaked_vit(global_pool="avg")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        prune.patch(model, layers=layers, placement=placement, rule="topk", value=0.5)
        model.pruning.configure(dense=True)
        out = model(x)
    assert torch.equal(out, expected)
    assert len(model.pruning.stages) == len(layers) and model.pruning.keep.all()


@pytest.mark.parametrize("layers,placement", SETTINGS)
def test_batched_equals_alone(layers, placement):
    model = prune.patch(peaked_vit(), layers=layers, placement=placement)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        for (rule, value), package in itertools.product(RULES, (True, False)):
            model.pruning.configure(rule=rule, value=value, package=package)
            batched = model(x)
            keep, tokens = model.pruning.keep, model.pruning.stats["tokens"]
            alone = [(model(x[i:i + 1]), model.pruning.keep, model.pruning.stats["tokens"]) for i in range(len(x))]
            assert (batched - torch.cat([a[0] for a in alone])).abs().max().item() <= 1e-5, (rule, package)
            assert torch.equal(keep, torch.cat([a[1] for a in alone]))
            assert torch.equal(tokens, torch.cat([a[2] for a in alone]))
        assert model.pruning.stats["tokens"].max() < 1 + PATCHES  # something was pruned


def test_stages_prune_more_and_attention_placement_runs_mlp_on_kept():
    x = torch.randn(2, 3, 32, 32)
    one = prune.patch(peaked_vit(), layer=2, rule="topk", value=0.5)
    two = prune.patch(peaked_vit(), layers=[2, 4], rule="topk", value=[0.5, 0.5])
    with torch.no_grad():
        one(x), two(x)
    assert one.pruning.stats["kept"].tolist() == [32, 32]
    # stage 2 scores 33 tokens (32 + package) and keeps ceil(16.5) = 17 of them, + a new package
    assert two.pruning.stats["tokens"].tolist() == [19, 19]
    assert ((two.pruning.stats["kept"] >= 16) & (two.pruning.stats["kept"] <= 17)).all()
    # the second stage scored 32 patches and the package token (index -1)
    assert (two.pruning.stages[1].index == -1).sum(dim=1).tolist() == [1, 1]
    assert torch.allclose(two.pruning.stages[1].tis.sum(dim=1), torch.ones(2))
    inside = prune.patch(peaked_vit(), layer=2, rule="topk", value=0.5, placement="attention")
    with torch.no_grad():
        inside(x)
    assert torch.equal(inside.pruning.keep, one.pruning.keep)  # same TIS, same choice
    saved = one.pruning.stats["macs"] - inside.pruning.stats["macs"]
    assert saved.tolist() == [2 * DIM * MLP * (65 - 34)] * 2  # block 2 MLP: CLS + 32 + package, not 65


def block_parts(n_attn: int, n_mlp: int, att: int | None = None) -> int:
    """Analytic MACs of one block: qkv + proj on n_attn tokens, QK^T and AV over att, MLP on n_mlp."""
    att = n_attn if att is None else att
    return n_attn * 4 * DIM * DIM + 2 * att * att * DIM + n_mlp * 2 * DIM * MLP


@pytest.mark.parametrize("layers,placement", SETTINGS)
@pytest.mark.parametrize("rule,value", RULES)
def test_macs_analytic_and_counted(layers, placement, rule, value):
    model = prune.patch(peaked_vit(mlp_ratio=MLP / DIM), layers=layers, placement=placement, rule=rule,
                        value=value)
    x = torch.randn(4, 3, 32, 32)
    result = macs(model, x)
    assert result["total"] == int(result["macs_padded"].sum())  # what was executed, padding included
    for i in range(len(x)):
        model(x[i:i + 1])
        seq = [65, *(int(n) for n in _stage_lengths(model))]  # tokens entering each segment
        expected = PATCHES * DIM * 48 + DIM * CLASSES
        for b in range(DEPTH):
            a = sum(p - 1 < b for p in layers)
            m = sum(p - 1 < b or (placement == "attention" and p - 1 == b) for p in layers)
            expected += block_parts(seq[a], seq[m])
        expected += sum(seq[s] * DIM + (seq[s] - 1) * DIM for s in range(len(layers)))  # scores + package
        assert result["macs"][i] == expected == count_macs(model, x[i:i + 1])


def _stage_lengths(model) -> list[int]:
    """Sequence length after each stage of the last forward (one image): prefix + kept + package."""
    return [1 + int(s.keep.sum()) + int((~s.keep).any()) for s in model.pruning.stages]


def test_explicit_attention_flop_counter_agrees():
    model = prune.patch(peaked_vit(), layers=[2, 4], placement="attention", rule="mass", value=0.7)
    x = torch.randn(3, 3, 32, 32)
    for blk in model.blocks:
        blk.attn.fused_attn = False
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() // 2 == int(model.pruning.stats["macs_padded"].sum())


@pytest.mark.parametrize("kwargs,match", [
    (dict(layers=[2, 7]), r"layers: value \[2, 7\] is out of range; .*1 <= layer <= 6"),
    (dict(layers=[3, 3]), r"layers: value \[3, 3\] is not allowed; the pruning layers must be strictly increasing"),
    (dict(layers=[4, 2]), r"layers: .*strictly increasing"),
    (dict(layers=[]), r"layers: value \[\] is not allowed; give a non-empty list"),
    (dict(layers=[0, 2]), r"layers: .*1-based"),
    (dict(layers=[2, 4], value=[0.5]), r"value: value \[0.5\] is not allowed; give one number for every stage "
                                       r"or a list of 2"),
    (dict(layers=[2, 4], value=[0.5, 1.5], rule="topk"), r"value: value 1.5 is not allowed; rule 'topk'"),
    (dict(placement="mlp"), r"placement: value 'mlp' is not allowed; choose one of \['block', 'attention'\]"),
])
def test_bad_stages_and_placement(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        prune.patch(peaked_vit(), **kwargs)


def test_configure_stages_and_config_load():
    model = prune.patch(peaked_vit(), layer=2, rule="topk", value=0.5)
    model.pruning.configure(layers=[1, 3], placement="attention", value=[0.7, 0.5])
    assert model.pruning.config.stages == (1, 3) and model.pruning.config.values == (0.7, 0.5)
    with pytest.raises(ConfigError, match=r"layers: value \[1, 9\] is out of range"):
        model.pruning.configure(layers=[1, 9])
    assert model.pruning.config.stages == (1, 3)  # unchanged after the error
    with pytest.raises(ConfigError, match=r"value: value \[0.7, 0.5\] is not allowed; .* a list of 1"):
        model.pruning.configure(layer=4)  # one stage now, two values
    model.pruning.configure(layer=4, value=0.5)
    assert model.pruning.config.stages == (4,) and model.pruning.config.layers is None
    cfg = from_dict(prune.PruneConfig, {"layers": [4, 7, 10], "rule": "topk", "value": [0.7, 0.7, 0.7],
                                        "placement": "attention"})
    assert cfg.layer == 4 and cfg.stages == (4, 7, 10)
    with pytest.raises(ConfigError, match=r"layers\[1\]: value 'x' is not allowed; an integer is required"):
        from_dict(prune.PruneConfig, {"layers": [4, "x"]})


def test_stage_distillation_is_token_distillation_for_one_stage_and_sees_later_stages():
    model = prune.patch(peaked_vit(), layers=[2, 4], rule="value", value=1.0)
    x = torch.randn(3, 3, 32, 32)
    model(x)
    teacher = torch.softmax(torch.randn(3, PATCHES), dim=1)
    first = model.pruning.stages[0]
    assert torch.allclose(stage_distillation(teacher, [first]), token_distillation(teacher, first.tis), atol=1e-6)
    loss = stage_distillation(teacher, model.pruning.stages)
    loss.backward()
    assert loss.item() > 0 and model.blocks[3].attn.qkv.weight.grad.abs().sum() > 0  # stage 2 is trained


def test_training_config_takes_stages_placement_and_teacher_layer(tmp_path):
    from vitaccel.train import TrainConfig
    from vitaccel.train.build import build_student

    cfg = from_dict(TrainConfig, {"recipe": "sait", "model": "vit_pico_patch4_32", "teacher": "x.pt",
                                  "teacher_layer": 1, "prune": {"layers": [1, 2], "value": [0.5, 0.5],
                                                                "rule": "topk", "placement": "attention"}})
    assert cfg.prune.stages == (1, 2) and cfg.prune.placement == "attention" and cfg.teacher_block == 0
    student = build_student(cfg, 10)  # a 2-block model: placement attention may prune at its last block
    assert student.pruning.config.stages == (1, 2) and student.pruning.config.dense
    with pytest.raises(ConfigError, match=r"prune.layers: value \[1, 2\] is not allowed; this 2-block model "
                                          r"needs 1 <= prune.layer <= 1 with placement 'block'"):
        build_student(from_dict(TrainConfig, {"model": "vit_pico_patch4_32", "prune": {"layers": [1, 2]}}), 10)
    with pytest.raises(ConfigError, match=r"teacher_layer: value 0 is not allowed; a 1-based block"):
        from_dict(TrainConfig, {"teacher_layer": 0})
    with pytest.raises(ConfigError, match=r"prune.placement: value 'x' is not allowed; choose one of"):
        from_dict(TrainConfig, {"prune": {"placement": "x"}})


@pytest.mark.parametrize("layers", [[2], [1, 3]])
def test_length_sorted_sub_batches_equal_alone_and_execute_less(layers, monkeypatch):
    from vitaccel.prune import patching

    model = prune.patch(peaked_vit(), layers=layers, rule="mass", value=0.6, placement="attention")
    x = torch.randn(patching.BUCKET_MIN, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        executed = count_macs(model, x)
        stats = model.pruning.stats
        assert executed == int(stats["macs_padded"].sum())  # per-image widths of the sub-batches
        alone = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
        assert (out - alone).abs().max().item() <= 1e-5
        monkeypatch.setattr(patching, "BUCKET_MIN", 10 ** 9)  # one padded batch
        assert (model(x) - out).abs().max().item() <= 1e-5
        assert count_macs(model, x) > executed and torch.equal(model.pruning.stats["macs"], stats["macs"])


def test_macs_follow_configure_on_one_model():
    """The MAC coefficients a patched model keeps per setting follow every ``configure``: layouts,
    placements, dense and package, one after another on the same model, each equal to the counter."""
    model = prune.patch(peaked_vit(mlp_ratio=MLP / DIM), layer=2, rule="topk", value=0.5)
    x = torch.randn(2, 3, 32, 32)
    settings = [dict(), dict(layers=[1, 3, 5], placement="attention"), dict(dense=True),
                dict(dense=False, package=False), dict(layers=[2, 4], placement="block", rule="mass", value=0.7),
                dict(layer=2, layers=None, rule="topk", value=0.5, package=True)]
    seen = set()
    for settings_ in settings:
        model.pruning.configure(**settings_)
        result = macs(model, x)
        assert result["total"] == int(result["macs_padded"].sum())
        for i in range(len(x)):
            assert result["macs"][i] == count_macs(model, x[i:i + 1])
        seen.add(int(result["total"]))
    assert len(seen) >= 5  # the settings really differ in cost
