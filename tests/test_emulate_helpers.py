"""Helpers for the emulation tests (no tests here): small models of the three families the emulator
must handle, a spy on the backend, a counter of native matrix products."""

from __future__ import annotations

import contextlib

import pytest
import timm
import torch
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode

from vitaccel.emulate import Backend

# aten ops that multiply matrices: none may run outside the backend while a model is emulated
MATMUL_ATEN = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "linear", "convolution", "mv", "dot",
               "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math",
               "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention"}


def tiny_vit() -> torch.nn.Module:
    """A timm DeiT with fused attention, shrunk to 32 px, 2 blocks, 48 wide."""
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              depth=2, embed_dim=48, num_heads=2, num_classes=10).eval()
    assert model.blocks[0].attn.fused_attn
    return model


def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def tiny_bert(attn: str = "sdpa") -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32, attn_implementation=attn)
    return transformers.BertModel(cfg).eval()


def bert_inputs() -> dict:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return {"input_ids": torch.randint(0, 50, (2, 9), generator=g), "attention_mask": mask}


def image(size: int = 32, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(2))


FAMILIES = {
    "timm-deit": (tiny_vit, lambda: (image(),), {}),
    "torchvision-resnet18": (resnet18, lambda: (image(),), {}),
    "hf-bert": (tiny_bert, lambda: (), None),
}


def family(name):
    build, args, kwargs = FAMILIES[name]
    return build(), args(), (bert_inputs() if kwargs is None else kwargs)


def main_output(out):
    return out if isinstance(out, torch.Tensor) else out.last_hidden_state


class MatmulCounter(TorchDispatchMode):
    """Counts aten matrix products that run while ``outside`` is True."""

    def __init__(self):
        super().__init__()
        self.outside, self.count, self.names = True, 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if self.outside and name in MATMUL_ATEN:
            self.count += 1
            self.names.append(name)
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def inside(self):
        self.outside = False
        try:
            yield
        finally:
            self.outside = True


def spy_backend(config: str, exact: bool, counter: MatmulCounter | None = None) -> tuple[Backend, list]:
    """The real backend of ``config``, recording every (a, b, a_scale, b_scale, out) it computes."""
    real = Backend.from_config(config, exact)
    calls = []

    def matmul(a, b, *, a_scale=None, b_scale=None):
        with counter.inside() if counter else contextlib.nullcontext():
            out = real.matmul(a, b, a_scale=a_scale, b_scale=b_scale)
        calls.append((a.clone(), b.clone(), a_scale, b_scale, out.clone()))
        return out
    return Backend(real.name, real.datapath, matmul, real.tier, real.qmax), calls
