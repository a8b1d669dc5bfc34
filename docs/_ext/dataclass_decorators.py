"""Griffe extension: classes made dataclasses by a project decorator get their ``__init__`` documented.

Griffe recognises ``@dataclasses.dataclass`` only. ``jaxloss.nn`` wraps it in its own
decorator (a frozen dataclass that is also a JAX pytree); naming that decorator here lets
Griffe's dataclass support build the constructor signature from the fields, so the site shows
``CrossEntropyLoss(weight=None, ignore_index=-100, ...)`` rather than a bare class name.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


class DataclassDecorators(griffe.Extension):
    """Treat classes decorated with any of ``decorators`` (import paths) as ``@dataclass`` ones."""

    def __init__(self, decorators: list[str]) -> None:
        super().__init__()
        self.decorators = set(decorators)

    def on_class_instance(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if any(d.callable_path in self.decorators for d in cls.decorators):
            expr = griffe.get_expression(
                ast.parse("dataclasses.dataclass", mode="eval").body, parent=cls.parent
            )
            cls.decorators.append(griffe.Decorator(expr, lineno=cls.lineno, endlineno=cls.lineno))
