"""Griffe extension: ``Name = module_class(loss)`` documents the class it makes.

The class twins of the losses (``jaxloss.nn.CrossEntropyLoss``...) are generated from each
loss's registration by :func:`jaxloss._registry.module_class`; read statically, the
assignment is a plain attribute. This extension replaces each such attribute by a class built
from the generated one (imported): its docstring, its constructor signature (the dataclass
fields, keyword-only where declared) and its ``__call__``, at the assignment's place in the
source, with the site's other extensions (reST to Markdown) applied to it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _parameters(function: Any, skip_self: bool) -> griffe.Parameters:
    params = list(inspect.signature(function).parameters.values())
    if skip_self:
        params = params[1:]
    return griffe.Parameters(
        *(
            griffe.Parameter(
                p.name,
                annotation=None if p.annotation is inspect.Parameter.empty else str(p.annotation),
                kind=_KINDS[p.kind],
                default=None if p.default is inspect.Parameter.empty else repr(p.default),
            )
            for p in params
        )
    )


class ModuleClasses(griffe.Extension):
    """Attributes assigned a call of one of ``factories`` (import paths) become the classes they hold."""

    def __init__(self, factories: list[str]) -> None:
        super().__init__()
        self.factories = set(factories)

    def _made_here(self, member: Any) -> bool:
        if member.is_alias or not member.is_attribute:  # reading an alias would resolve it, too early
            return False
        value = member.value
        return isinstance(value, griffe.ExprCall) and value.function.canonical_path in self.factories

    def on_module_members(self, *, mod: griffe.Module, agent: Any, **kwargs: Any) -> None:
        names = [name for name, member in mod.members.items() if self._made_here(member)]
        if not names:
            return
        module = importlib.import_module(mod.path)
        for name in names:
            old, obj = mod.members[name], getattr(module, name)
            cls = griffe.Class(name, lineno=old.lineno, endlineno=old.endlineno, parent=mod)
            cls.labels.add("dataclass")
            cls.docstring = griffe.Docstring(
                inspect.getdoc(obj) or "",
                lineno=old.lineno,
                parent=cls,
                parser=agent.docstring_parser,
                parser_options=agent.docstring_options,
            )
            init = griffe.Function("__init__", parameters=_parameters(obj, skip_self=False), parent=cls)
            call = griffe.Function("__call__", parameters=_parameters(obj.__call__, skip_self=False), parent=cls)
            call.docstring = griffe.Docstring(inspect.getdoc(obj.__call__) or "", parent=call)
            cls.set_member("__init__", init)
            cls.set_member("__call__", call)
            for field in dataclasses.fields(obj):  # the options, as the dataclass's attributes
                attribute = griffe.Attribute(field.name, parent=cls)
                attribute.labels.add("dataclass-field")
                cls.set_member(field.name, attribute)
            del mod.members[name]
            mod.set_member(name, cls)
            agent.extensions.call("on_instance", node=None, obj=cls, agent=agent)
