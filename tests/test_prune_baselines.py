"""The accuracy harness's baselines (benchmarks/prune_accuracy.py): ToMe-style merging and EViT-style
pruning are exact where they must be (no merge / keep all = the dense model; EViT-style = vitaccel
topk inside the block), fold splits cover every image once, and the harness runs end to end."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import prune_accuracy as harness  # noqa: E402


def vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4, num_classes=10).eval()


def test_no_merge_and_keep_all_equal_dense():
    model, x = vit(), torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        dense = model(x)
        assert torch.allclose(harness.tome_forward(model, x, 0), dense, atol=1e-5)
        assert torch.allclose(harness.evit_forward(model, x, 1.0), dense, atol=1e-5)


def test_tome_merges_r_per_block_and_keeps_size():
    model, x = vit(), torch.randn(2, 3, 32, 32)
    seen = []
    model.blocks[-1].mlp.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].shape[1]))
    with torch.no_grad():
        harness.tome_forward(model, x, 8)
    assert seen == [65 - 4 * 8]
    tokens = torch.randn(1, 5, 4)
    merged, size = harness._merge(tokens, torch.ones(1, 5, 1), tokens, 2)
    assert merged.shape == (1, 3, 4) and size.sum() == 5 and torch.equal(merged[:, 0], tokens[:, 0])


def test_evit_style_equals_vitaccel_topk_inside_the_block():
    model, x = vit(), torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        evit = harness.evit_forward(model, x, 0.5)
        ours = prune.patch(model, layer=1, rule="topk", value=0.5, placement="attention")(x)
    assert torch.allclose(evit, ours, atol=1e-5)


def test_folds_cover_every_image_once():
    parts = harness.folds(1797, 5)
    assert sorted(torch.cat(parts).tolist()) == list(range(1797)) and {len(p) for p in parts} == {359, 360}


def test_search_finds_the_largest_setting_within_budget():
    # topk: MACs grow with k; the largest k / n at or below the budget (1 / n when none fits)
    assert harness.search(lambda v: v * 100, "topk", 10, 55.0, 0) == 0.5
    assert harness.search(lambda v: v * 100, "topk", 10, 5.0, 0) == 0.1
    # mass grows, value falls with its parameter: bisection to within 2**-steps of the range
    assert abs(harness.search(lambda v: v * 100, "mass", 10, 30.0, 30) - 0.3) < 1e-6
    value = harness.search(lambda v: 100 - v, "value", 64, 40.0, 30)
    assert 100 - value <= 40.0 and abs(value - 60.0) < 1e-4


def test_stage_values_and_common_rows():
    assert harness.stage_values("1-3-5", "topk", 0.7) == [0.7, 0.7, 0.7]
    assert harness.stage_values("1-3-5+6", "mass", 0.8) == [0.8, 0.8, 0.8, harness.LAST["mass"]]
    a = [dict(model="m", method="x", n=1), dict(model="m", method="only here", n=1)]
    b = [dict(model="m", method="x", n=2)]
    assert harness.common_rows([a, b]) == [a[0], b[0]]  # a method some fold lacks is left out


@pytest.mark.slow
def test_quick_run(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "prune_accuracy.py"), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "table.md").read_text()
    assert "ToMe-style" in table and "vitaccel mass (attention, 1)" in table and "SaiT (attention)" in table
    assert "vitaccel topk (attention, 1-3-5+6)" in table and "SaiT (attention, 1-3-5)" in table
    assert "vitaccel topk (attention, 1-3-5+6, per stage)" in table


def test_schedules_meet_the_budget_and_their_macs_match_a_forward():
    # the analytic token counts and MACs of per-stage topk schedules equal what a forward records;
    # each schedule is the largest a = k / 64 within the budget; ratio 1 is the shared value
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=6, num_heads=2, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    layers = list(harness.LAYOUTS[harness.PER_STAGE[0]][0])
    prune.patch(model, layers=layers, rule="topk", value=[0.5] * len(layers), placement="attention")
    assert harness.schedule(0.5, 1.0) == harness.stage_values(harness.PER_STAGE[0], "topk", 0.5)
    with torch.no_grad():
        model.pruning.configure(dense=True)
        model(x)
        dense = int(model.pruning.stats["macs"][0])
        model.pruning.configure(dense=False)
        budget = 0.6 * dense
        options = harness.schedule_options(model, 64, budget)
        assert 1 < len(options) <= len(harness.RATIOS)
        for values in options:
            model.pruning.configure(value=list(values))
            model(x)
            macs = harness.topk_macs(model, 64, list(values))
            assert [s.keep.shape[1] for s in model.pruning.stages[1:]] == harness.topk_lengths(values, 64)[:-1]
            assert model.pruning.stats["macs"].tolist() == [macs] * 2 and macs <= budget
            a = values[0] + 1 / 64  # one token more at stage 1 breaks the budget
            r = [r for r in harness.RATIOS if tuple(harness.schedule(values[0], r)) == values][0]
            assert harness.topk_macs(model, 64, harness.schedule(a, r)) > budget


def test_faithful_setting_prefers_the_dense_like_setting():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=6, num_heads=2, num_classes=10).eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        dense_logp = model(x).log_softmax(-1)
        prune.patch(model, layers=[1, 3, 5, 6], rule="topk", value=[1.0] * 4, placement="attention")
        keep_all, cut = (1.0, 1.0, 1.0, harness.LAST["topk"]), (0.3, 0.3, 0.3, harness.LAST["topk"])
        assert harness.faithful_setting(model, x, dense_logp, [cut, keep_all]) == keep_all
