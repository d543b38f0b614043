"""The SaiT losses: token distillation (teacher CLS attention -> student TIS) and logit distillation."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from vitaccel.prune import Stage


def token_distillation(teacher_attention: torch.Tensor, student_tis: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``KL(teacher || student)`` over patch tokens, averaged over images.

    Both are (B, N_patches) distributions (rows sum to 1). The student's TIS is clamped at
    ``eps`` before the log so that a token it scores zero gives a large but finite loss.
    """
    if teacher_attention.shape != student_tis.shape:
        raise ValueError(f"teacher attention {tuple(teacher_attention.shape)} and student TIS "
                         f"{tuple(student_tis.shape)} must have the same (batch, patches) shape")
    log_student = student_tis.float().clamp_min(eps).log()
    return F.kl_div(log_student, teacher_attention.float(), reduction="batchmean")


def stage_distillation(teacher_attention: torch.Tensor, stages: Sequence[Stage], eps: float = 1e-8) -> torch.Tensor:
    """``token_distillation`` averaged over pruning stages (``model.pruning.stages``).

    Each stage is compared on the original patches it scored: the teacher's attention is taken at
    those patches and the student's TIS without package tokens and padding, both renormalised.
    The first stage scores every patch, so with one stage this is ``token_distillation``.
    """
    losses = []
    for stage in stages:
        patch = stage.index >= 0
        target = teacher_attention.gather(1, stage.index.clamp(min=0)) * patch
        student = stage.tis * patch
        losses.append(token_distillation(target / target.sum(dim=1, keepdim=True).clamp_min(eps),
                                         student / student.sum(dim=1, keepdim=True).clamp_min(eps), eps))
    return torch.stack(losses).mean()


def logit_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """Hinton's soft-label loss: ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, -1), F.log_softmax(teacher_logits.float() / t, -1),
                    reduction="batchmean", log_target=True) * t * t
