"""Distance helpers with torch semantics."""

from __future__ import annotations

# PLACEHOLDER MODULE: replace entirely.

def pairwise_distance(*args, **kwargs):
    raise NotImplementedError("pairwise_distance")


def cosine_similarity(*args, **kwargs):
    raise NotImplementedError("cosine_similarity")

