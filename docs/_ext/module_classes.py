"""Griffe extension: ``Name = module_class(loss)`` documents the class it makes.

The class twins of the losses (``jaxloss.nn.CrossEntropyLoss``...) are generated from each
loss's registration by :func:`jaxloss._registry.module_class`; read statically, the
assignment is a plain attribute. This extension replaces each such attribute by the class
itself, inspected at run time (its fields, its ``__init__`` signature, its docstring), with the
site's other extensions applied to it, at the assignment's place in the source.
"""

from __future__ import annotations

from typing import Any

import griffe


class ModuleClasses(griffe.Extension):
    """Attributes assigned a call of one of ``factories`` (import paths) become the classes they hold."""

    def __init__(self, factories: list[str]) -> None:
        super().__init__()
        self.factories = set(factories)

    def _made_here(self, member: Any) -> bool:
        value = getattr(member, "value", None)
        return (
            not member.is_alias
            and member.is_attribute
            and isinstance(value, griffe.ExprCall)
            and value.function.canonical_path in self.factories
        )

    def on_module_members(self, *, mod: griffe.Module, agent: Any, **kwargs: Any) -> None:
        names = [name for name, member in mod.members.items() if self._made_here(member)]
        if not names:
            return
        inspected = griffe.inspect(
            mod.path,
            extensions=agent.extensions,
            docstring_parser=agent.docstring_parser,
            docstring_options=agent.docstring_options,
        )
        for name in names:
            old, cls = mod.members[name], inspected.members[name]
            cls.lineno, cls.endlineno = old.lineno, old.endlineno  # keep the source order
            del mod.members[name]
            mod.set_member(name, cls)
