"""Griffe extension: the reStructuredText bits of jaxloss's docstrings, as Markdown.

The docstrings are Google style (``Args:`` / ``Returns:`` / ``Raises:``) but use a few
reST constructs that Markdown would print raw: cross-reference roles (``:func:`x```),
``.. math::`` blocks, ``::`` literal-block markers, simple tables (``=====  ====``
borders), and bare ``>>>`` examples (which Markdown reads as nested block quotes). Only the documentation's view of a docstring is
rewritten; the source, and so the doctests, are untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# :func:`x`, :class:`~a.b.C`, :mod:`jaxloss.parity.compare`, ... (reST roles that name Python objects).
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const):`(~?)([^`<>]+?)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_OWN_PACKAGES = ("jaxloss",)  # jaxloss, jaxloss.parity, jaxloss.train
_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Other Parameters):\s*$")
_GROUPED_ITEM = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+):\s*(.*)$")
_DUNDER = re.compile(r"(?<![`\w./>])(__\w+__)(?![`\w])")  # bare __call__ would render as bold "call"
_EXAMPLES_SECTION = re.compile(r"^\s*Examples?:\s*$")
_SHELL = ("python ", "pip ", "#", ".venv/")
_DIRECTIVE = re.compile(r"\s*# doctest:.*$")
_TABLE_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")


def _crossref(obj: griffe.Object, tilde: str, target: str) -> str:
    """An optional autorefs link: a link where the target is documented, plain code elsewhere."""
    target = target.strip().removesuffix("()")
    shown = target.rsplit(".", 1)[-1] if tilde else target
    if target.split(".", 1)[0] not in _OWN_PACKAGES:
        if "." in target:  # jax.*, torch.*, optax.*: not part of this site
            return f"`{shown}`"
        scope = obj if obj.is_module or obj.is_class else obj.parent
        target = f"{scope.path}.{target}"  # a method's siblings, a class's members, a module's names
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


def _math_block(lines: list[str], start: int, out: list[str]) -> int:
    """``.. math:: expr`` (same line or indented below) as a display-math block; returns the next index."""
    line = lines[start]
    indent = line[: len(line) - len(line.lstrip())]
    body = [line.split("::", 1)[1].strip()]
    i = start + 1
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
        body.append(lines[i].strip())
        i += 1
    expr = " ".join(b for b in body if b)
    if "\\\\" in expr or "&" in expr:  # several aligned lines, as Sphinx's math directive allows
        expr = f"\\begin{{aligned}} {expr} \\end{{aligned}}"
    out.extend(["", f"{indent}$$", f"{indent}{expr}", f"{indent}$$", ""])
    return i


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _doctest_block(lines: list[str], start: int, out: list[str]) -> int:
    """A ``>>>`` example with its expected output, fenced as a ``pycon`` code block."""
    indent = " " * _indent(lines[start])
    i = start
    block = []
    while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= len(indent):
        block.append(_DIRECTIVE.sub("", lines[i][len(indent) :]))
        i += 1
    out.extend(["", f"{indent}```pycon", *(f"{indent}{b}" if b else "" for b in block), f"{indent}```", ""])
    return i


def _split_grouped_params(lines: list[str]) -> list[str]:
    """``a, b: text`` in an ``Args:`` section as one item per name (Griffe wants one name per item)."""
    out: list[str] = []
    section_indent = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _ARGS_SECTION.match(line):
            section_indent = _indent(line)
        elif line.strip() and section_indent is not None and _indent(line) <= section_indent:
            section_indent = None
        m = _GROUPED_ITEM.match(line) if section_indent is not None else None
        if m is None:
            out.append(line)
            i += 1
            continue
        indent, names, first = m[1], m[2], m[3]
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > len(indent)):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():
            j -= 1  # trailing blank lines stay after the last copy
        body = lines[i + 1 : j]
        for name in names.split(","):
            out.extend([f"{indent}{name.strip()}: {first}", *body])
        i = j
    return out


def rst_to_markdown(obj: griffe.Object, text: str) -> str:
    """Rewrite one docstring."""
    text = "\n".join(_split_grouped_params(text.splitlines()))
    text = "\n".join(_simple_tables(text.splitlines()))  # before the roles change column widths
    text = _ROLE.sub(lambda m: _crossref(obj, m[1], m[2]), text)
    text = _MATH_ROLE.sub(lambda m: f"${m[1]}$", text)
    lines = text.splitlines()
    out: list[str] = []
    examples_indent = None  # inside a Google "Examples:" section Griffe renders ">>>" itself
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped and examples_indent is not None and _indent(line) <= examples_indent:
            examples_indent = None
        if _EXAMPLES_SECTION.match(line):
            examples_indent = _indent(line)
            line = line.replace(
                "Example:", "Examples:"
            )  # Griffe: "Examples" is code, "Example" an admonition
        if examples_indent is not None and stripped.startswith(">>>"):
            out.append(_DIRECTIVE.sub("", line))
            i += 1
            continue
        if stripped.startswith(".. math::"):
            i = _math_block(lines, i, out)
            continue
        if stripped.startswith(">>>"):
            i = _doctest_block(lines, i, out)
            continue
        if line.endswith("::") and not stripped.startswith(".."):
            out.append(line[:-2].rstrip() + (":" if stripped != "::" else ""))  # "Usage::" -> "Usage:"
            i = _literal_block(lines, i, out)
            continue
        if _is_definition_term(lines, i):
            _dedent_definition(lines, i)
            out.append(f"{line[: _indent(line)]}**{stripped}**")
            i += 1
            continue
        out.append(_DUNDER.sub(r"`\1`", line))
        i += 1
    return "\n".join(out)


def _simple_tables(lines: list[str]) -> list[str]:
    """Every reST simple table (``===  ===`` borders) as a Markdown table."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _TABLE_BORDER.match(lines[i]):
            i = _simple_table(lines, i, out)
        else:
            out.append(lines[i])
            i += 1
    return out


def _simple_table(lines: list[str], start: int, out: list[str]) -> int:
    """The table whose top border is ``lines[start]``; returns the index after its bottom border.

    Columns are where the border's ``=`` runs start (the last one runs to the end of the line);
    a row whose first column is blank continues the row above, as in reST. The border under the
    first row(s) makes them the header; a table without one takes its first row as the header."""
    border = lines[start]
    starts = [m.start() for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    header_rows = 0
    borders = 1
    i = start + 1
    while i < len(lines) and borders < 3:
        line = lines[i]
        i += 1
        if _TABLE_BORDER.match(line):
            borders += 1
            if borders == 2 and i < len(lines) and lines[i].strip():
                header_rows = len(rows)  # a body follows: the rows so far are the header
            elif borders == 2:
                break  # two borders and a blank line: a table without a header
            continue
        if not line.strip():
            continue
        ends = starts[1:] + [len(line)]
        cells = [line[a:b].strip() for a, b in zip(starts, ends)]
        if rows and not cells[0]:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    if not rows:
        out.extend(lines[start:i])
        return i
    header_rows = max(header_rows, 1)
    header = [" ".join(c for c in column if c) for column in zip(*rows[:header_rows])]
    pad = border[: _indent(border)]

    def row(cells: list[str]) -> str:
        return pad + "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out.extend(["", row(header), pad + "|" + "---|" * len(starts), *map(row, rows[header_rows:]), ""])
    return i


def _is_definition_term(lines: list[str], i: int) -> bool:
    """A reST definition-list term: a short line after a blank one, its definition indented below."""
    line, term = lines[i], lines[i].strip()
    return (
        bool(term)
        and (i == 0 or not lines[i - 1].strip())
        and i + 1 < len(lines)
        and bool(lines[i + 1].strip())
        and _indent(lines[i + 1]) > _indent(line)
        and ":" not in term  # Google-style items and section titles have one
        and len(term) <= 60
        and not term.endswith((".", ",", ";"))
        and not term.startswith(("*", "-", "+", "#", "|", "`"))
    )


def _dedent_definition(lines: list[str], term: int) -> None:
    """Dedent the definition below ``term`` to the term's level (Markdown would make it code)."""
    base = _indent(lines[term])
    shift = _indent(lines[term + 1]) - base
    j = term + 1
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
        lines[j] = lines[j][min(shift, _indent(lines[j])) :] if lines[j].strip() else ""
        j += 1


def _literal_block(lines: list[str], marker: int, out: list[str]) -> int:
    """The indented block after a ``::`` marker, fenced as code at the marker's indentation."""
    indent = _indent(lines[marker])
    i = marker + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    start = i
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        i += 1
    while i > start and not lines[i - 1].strip():
        i -= 1
    block = lines[start:i]
    if not block:
        return marker + 1
    inner = min(_indent(b) for b in block if b.strip())
    pad = " " * indent
    lang = "bash" if all(b.lstrip().startswith(_SHELL) for b in block if b.strip()) else "python"
    out.extend(
        ["", f"{pad}```{lang}", *(f"{pad}{b[inner:]}" if b.strip() else "" for b in block), f"{pad}```"]
    )
    return i


class RstToMarkdown(griffe.Extension):
    """Apply :func:`rst_to_markdown` to every docstring Griffe reads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj, obj.docstring.value)
