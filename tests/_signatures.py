"""The constructor signature of a class twin against its original's, for the namespace tests."""

from __future__ import annotations

import inspect
from typing import Any


def _params(cls: Any) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(cls).parameters.values() if p.name != "self"]


def signature_differences(ours: Any, theirs: Any, extra: tuple[str, ...] = ()) -> list[str]:
    """What differs between the constructor of ``ours`` and of ``theirs``: the arguments' names
    and order, their kind (positional or keyword-only), which are required, and the defaults
    (compared with ``==``: MONAI's defaults are ``str`` enums equal to the strings). ``extra``:
    the arguments ``ours`` may add after all of the original's (jaxloss.monai's ``axis``)."""
    mine, orig = _params(ours), _params(theirs)
    added = [p.name for p in mine[len(orig):]]
    out = [] if added == list(extra) else [f"{ours.__name__}: extra arguments {added}, expected {list(extra)}"]
    if [p.name for p in mine[: len(orig)]] != [p.name for p in orig]:
        return [*out, f"{ours.__name__}: arguments {[p.name for p in mine]} != {[p.name for p in orig]}"]
    for a, b in zip(mine, orig):
        if a.kind != b.kind:
            out.append(f"{ours.__name__}({a.name}): kind {a.kind.description} != {b.kind.description}")
        required = (a.default is inspect.Parameter.empty, b.default is inspect.Parameter.empty)
        if required[0] != required[1]:
            out.append(f"{ours.__name__}({a.name}): required {required[0]} != {required[1]}")
        elif not required[0] and not _same_default(a.default, b.default):
            out.append(f"{ours.__name__}({a.name}): default {a.default!r} != {b.default!r}")
    return out


def _same_default(a: Any, b: Any) -> bool:
    """Equal defaults; a bool equals only a bool (``True == 1`` in Python)."""
    return a is b or (isinstance(a, bool) == isinstance(b, bool) and bool(a == b))
