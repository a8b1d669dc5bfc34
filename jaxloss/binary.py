"""Binary and multi-label losses on probabilities / logits."""

from __future__ import annotations

# PLACEHOLDER MODULE: replace entirely.

def binary_cross_entropy(*args, **kwargs):
    raise NotImplementedError("binary_cross_entropy")


def binary_cross_entropy_with_logits(*args, **kwargs):
    raise NotImplementedError("binary_cross_entropy_with_logits")


def sigmoid_focal_loss(*args, **kwargs):
    raise NotImplementedError("sigmoid_focal_loss")


def soft_margin_loss(*args, **kwargs):
    raise NotImplementedError("soft_margin_loss")


def multilabel_soft_margin_loss(*args, **kwargs):
    raise NotImplementedError("multilabel_soft_margin_loss")

