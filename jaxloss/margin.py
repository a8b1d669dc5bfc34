"""Hinge / margin losses."""

from __future__ import annotations

# PLACEHOLDER MODULE: replace entirely.

def multilabel_margin_loss(*args, **kwargs):
    raise NotImplementedError("multilabel_margin_loss")


def multi_margin_loss(*args, **kwargs):
    raise NotImplementedError("multi_margin_loss")


def margin_ranking_loss(*args, **kwargs):
    raise NotImplementedError("margin_ranking_loss")


def hinge_embedding_loss(*args, **kwargs):
    raise NotImplementedError("hinge_embedding_loss")

