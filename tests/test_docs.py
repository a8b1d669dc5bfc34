"""The documentation runs: docstring examples are doctests, and the API site builds strictly.

* Every ``>>>`` example in the ``jaxloss``, ``parity`` and ``train`` packages is executed,
  one test per module, as ``python -m doctest -o ELLIPSIS -o NORMALIZE_WHITESPACE`` would
  run it: the module's own globals and nothing injected, ``jax_enable_x64`` as a fresh
  interpreter has it after importing the module (on for ``parity``, which turns it on at
  import; off elsewhere). A module that fails to import (a missing extra) fails here.
* The ``>>>`` examples of the hand-written pages in ``docs/`` run too.
* Every public function and class has a ``>>>`` example.
* ``mkdocs build --strict`` succeeds and the site documents every exported function, with
  the reST markup of the docstrings turned into Markdown.
"""

from __future__ import annotations

import doctest
import html
import importlib
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> installed import name (pyproject.toml package-dir)
PACKAGES = {"jaxloss": "jaxloss", "parity": "jaxloss.parity", "train": "jaxloss.train"}
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    """Every module of the three packages, from the source tree (nothing imported)."""
    names = []
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


def _source(module_name: str) -> Path:
    parts = module_name.split(".")
    if parts[:2] in (["jaxloss", "parity"], ["jaxloss", "train"]):
        parts = parts[1:]  # jaxloss.parity.x lives in parity/x.py
    path = ROOT / Path(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


EXAMPLE_LINE = re.compile(r"^\s*>>> ", re.MULTILINE)
MODULES_WITH_EXAMPLES = [m for m in _module_names() if EXAMPLE_LINE.search(_source(m).read_text())]


# Examples that train, build whole models or compile a program per class (several seconds each):
# the slow tier runs them (CI too); the default tier keeps every other module's and page's examples.
# jaxloss.train.recipe builds the seed CNN (its eager initialisers, ~6 s; the twin builds through
# it in tests/test_train_twin.py's default tests, and test_model_registry reads its table); jaxloss.monai compiles each of its ten class twins (~5 s; the
# default tier keeps its function modules' examples, docs/losses/monai.md's, and test_monai's
# class-twin test). The three costliest of the rest (CPU s measured one after another in one process,
# imports done first): jaxloss.parity.weights (3.5: Flax and torch models built, a conv forward; the
# loader and exporter run in tests/test_port_weights.py and test_port_models.py), jaxloss.parity.models.float64
# (2.1: a float64 LSTM's scan compiled; to_float64 runs in tests/test_port_models.py and
# tests/_port_models.py's pairs), jaxloss.monai.cldice (1.8: the soft skeleton's pooling loop compiled;
# test_monai's default clDice cases against MONAI stay default). jaxloss.parity.models.twins builds whole
# models (two seed-CNN pairs, a torch ResNet-18; 1.1 s): build_pair runs in tests/test_model_registry.py and
# under python -m jaxloss.parity.models in tests/test_parity_models.py.
SLOW_EXAMPLES = {"jaxloss.train.loop", "jaxloss.train.models", "jaxloss.parity.twin.run", "jaxloss.train.optim",
                 "jaxloss.train.augment", "jaxloss.nn_modules", "docs/porting.md", "jaxloss.train.recipe",
                 "jaxloss.monai", "jaxloss.parity.weights", "jaxloss.parity.models.float64", "jaxloss.monai.cldice",
                 "jaxloss.parity.models.twins"}


def _params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_EXAMPLES else []) for n in names]


# --------------------------------------------------------------------------- doctests
@pytest.mark.parametrize("module_name", _params(MODULES_WITH_EXAMPLES))
def test_docstring_examples_run(module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(module_name)  # an ImportError (missing extra) fails the test
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module) if t.examples]
    assert tests, f"{module_name} has '>>>' lines but doctest finds no example to run (not in a docstring?)"
    monkeypatch.chdir(tmp_path)  # an example that writes a relative path writes here
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    report = io.StringIO()
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", module_name.startswith("jaxloss.parity"))
    try:
        for test in tests:
            runner.run(test, out=report.write)
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} examples failed:\n{report.getvalue()}"


PAGES_WITH_EXAMPLES = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md") if EXAMPLE_LINE.search(p.read_text())
)


@pytest.mark.parametrize("page", _params(PAGES_WITH_EXAMPLES))
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hand-written pages' ``>>>`` examples, in a fresh namespace, float64 as in a new interpreter:
    # off, unless the page imports parity (which turns it on).
    monkeypatch.chdir(tmp_path)
    text = (ROOT / page).read_text()
    x64 = jax.config.jax_enable_x64
    jax.config.update(
        "jax_enable_x64", bool(re.search(r"^>>> (import|from) .*\bparity\b", text, re.MULTILINE))
    )
    try:
        results = doctest.testfile(
            str(ROOT / page),
            module_relative=False,
            globs={},
            optionflags=DOCTEST_FLAGS,
            report=False,
            verbose=False,
        )
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert results.attempted > 0
    assert results.failed == 0, (
        f"{results.failed} of {results.attempted} examples in {page} failed (details above)"
    )


# --------------------------------------------------------------------------- every public object has one
def _public_modules() -> list[str]:
    """``jaxloss``, ``parity``, ``train`` and every submodule without a ``_`` in its name.

    ``__main__`` modules are command lines (documented by their module docstring), not API."""
    return [m for m in _module_names() if not any(p.startswith("_") for p in m.split("."))]


def _public_objects(module: ModuleType) -> dict[str, Any]:
    """The functions and classes named in the module's ``__all__`` (none without one).

    ``jaxloss.checked`` has no ``__all__``: its functions are created on access and listed by
    ``dir()``; each carries the docstring of the function it checks."""
    if module.__name__ == "jaxloss.checked":
        names = [n for n in dir(module) if not n.startswith("_")]
    else:
        names = list(getattr(module, "__all__", ()))
    objects = {}
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj) or typing.get_origin(obj) is not None or not callable(obj):
            continue  # submodules, type aliases, constants
        objects[f"{module.__name__}.{name}"] = obj
    return objects


def _has_example(obj: Any) -> bool:
    docs = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj):
        docs.append(inspect.getdoc(obj.__init__) or "")
    return any(">>>" in d for d in docs)


def missing_examples() -> dict[str, list[str]]:
    """``{defining module: [public names without a >>> example]}``, each object once."""
    seen: set[int] = set()
    missing: dict[str, list[str]] = {}
    for module_name in _public_modules():
        for public_name, obj in _public_objects(importlib.import_module(module_name)).items():
            key = id(inspect.unwrap(obj))
            if key in seen:
                continue
            seen.add(key)
            if not _has_example(obj):
                home = getattr(obj, "__module__", None) or module_name
                missing.setdefault(home, []).append(public_name.rsplit(".", 1)[1])
    return missing


def test_every_public_function_and_class_has_an_example() -> None:
    missing = missing_examples()
    lines = [f"  {module}: {', '.join(sorted(names))}" for module, names in sorted(missing.items())]
    count = sum(len(v) for v in missing.values())
    assert not missing, f"{count} public functions/classes have no '>>>' example:\n" + "\n".join(lines)


# --------------------------------------------------------------------------- one route: registry -> docs, twin, cases, README
# Registered losses without a generated class twin, and why (the test reads the registry: a new
# loss without a class fails it unless it is named here).
NO_CLASS_TWIN = {
    "jaxloss.generalized_box_iou_loss": "torchvision has the function only",
    "jaxloss.distance_box_iou_loss": "torchvision has the function only",
    "jaxloss.complete_box_iou_loss": "torchvision has the function only",
    "jaxloss.pairwise_distance": "torch's PairwiseDistance is a distance module, not a loss (jaxloss.nn holds the losses)",
    "jaxloss.cosine_similarity": "torch's CosineSimilarity is a distance module, not a loss",
    "jaxloss.linear_cross_entropy": "its class owns parameters: the Flax module jaxloss.nn.LinearCrossEntropyLoss",
}
CLASS_HOME = {"jaxloss": "jaxloss.nn", "jaxloss.monai": "jaxloss.monai", "jaxloss.smp": "jaxloss.smp"}


def route_gaps(spec: Any, pages: dict[str, str], readme: str, parity_names: set[str]) -> list[str]:
    """What one registered loss lacks of its route: a ``::: name`` entry on one docs/losses page
    whose table row links it (and names its class), its class twin in its namespace, parity
    cases, and its name in the README's ``## Losses`` row that links that page."""
    qualified = f"{spec.namespace}.{spec.name}"
    targets = {qualified, f"{spec.fn.__module__}.{spec.name}"}
    gaps = []
    homes = [p for p, text in pages.items() if any(re.search(rf"^::: {re.escape(t)}\s*$", text, re.MULTILINE) for t in targets)]
    if len(homes) != 1:
        return [f"{qualified}: {len(homes)} docs/losses pages with its '::: {qualified}' entry, expected 1"]
    rows = [row for row in pages[homes[0]].splitlines() if row.startswith("|") and any(f"][{t}]" in row for t in targets)]
    if len(rows) != 1 or (spec.module and spec.module not in rows[0]):
        gaps.append(f"{qualified}: {homes[0]}'s table has no one row linking it and naming its class {spec.module}")
    if spec.module is None:
        if qualified not in NO_CLASS_TWIN:
            gaps.append(f"{qualified}: no class twin (module=...) and no reason in NO_CLASS_TWIN")
    elif getattr(getattr(importlib.import_module(CLASS_HOME[spec.namespace]), spec.module, None), "_spec", None) is not spec:
        gaps.append(f"{qualified}: {CLASS_HOME[spec.namespace]}.{spec.module} is not its class twin")
    if qualified.removeprefix("jaxloss.") not in parity_names:
        gaps.append(f"{qualified}: no parity cases (jaxloss.parity.cases)")
    readme_rows = [row for row in readme.split("\n## Losses\n", 1)[-1].split("\n## ", 1)[0].splitlines()
                   if row.startswith("|") and f"]({homes[0]})" in row]
    if len(readme_rows) != 1 or f"`{spec.name}`" not in readme_rows[0] or f"`{spec.namespace}`" not in readme_rows[0]:
        gaps.append(f"{qualified}: no README '## Losses' row linking {homes[0]} and naming `{spec.name}`")
    return gaps


def test_every_registered_loss_has_its_docs_entry_class_twin_parity_cases_and_readme_row() -> None:
    """The one route for a loss: its function (registered) brings its class twin; its parity
    cases and its docs entry (page entry, table row, README row) are checked here, from the
    registry of every namespace. Every README row names registered losses only."""
    pytest.importorskip("torch")
    from jaxloss.parity import runner

    from jaxloss import _registry  # importing jaxloss registers every namespace (monai, smp)

    pages = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "docs/losses").glob("*.md"))}
    readme = (ROOT / "README.md").read_text()
    parity_names = set(runner.registry())
    # the product's namespaces only: a test module may register a toy loss of its own (namespace
    # "tests"), and which ones are registered depends on the order the tests ran in
    specs = {k: s for k, s in _registry.all_registered().items() if s.namespace.split(".")[0] == "jaxloss"}
    assert {s.namespace for s in specs.values()} == set(CLASS_HOME) and len(specs) >= 47
    gaps = [g for spec in specs.values() for g in route_gaps(spec, pages, readme, parity_names)]
    assert not gaps, "\n".join(gaps)
    # no stale README row entry: each name listed is a registered loss of that row's namespace
    listed = re.findall(r"^\| \[[^]]*\]\(docs/losses/[^)]*\) \| `([\w.]+)` \| (.*) \|$", readme, re.MULTILINE)
    assert listed and {f"{ns}.{n}" for ns, names in listed for n in re.findall(r"`(\w+)`", names)} == set(specs)
    # it can fail: a registration with none of its route, and one whose README row is missing
    import dataclasses

    planted = dataclasses.replace(specs["jaxloss.monai.dice_loss"], name="planted_loss", module="PlantedLoss")
    assert route_gaps(planted, pages, readme, parity_names) == [
        "jaxloss.monai.planted_loss: 0 docs/losses pages with its '::: jaxloss.monai.planted_loss' entry, expected 1"]
    pages["docs/losses/monai.md"] += "\n::: jaxloss.monai.planted_loss\n"
    assert len(route_gaps(planted, pages, readme, parity_names)) == 4
    no_readme = readme.replace("`dice_ce_loss` (DiceCELoss), ", "")
    assert route_gaps(specs["jaxloss.monai.dice_ce_loss"], pages, no_readme, parity_names) == [
        "jaxloss.monai.dice_ce_loss: no README '## Losses' row linking docs/losses/monai.md and naming `dice_ce_loss`"]


def test_completeness_check_sees_examples_and_their_absence() -> None:
    # The check above must be able to fail and to pass: one object with an example, one without.
    def documented() -> None:
        """Doc.

        >>> 1 + 1
        2
        """

    def undocumented() -> None:
        """Doc without an example."""

    assert _has_example(documented) and not _has_example(undocumented)
    module = ModuleType("fake_public_module")
    module.__all__ = ["documented", "undocumented", "CONSTANT"]
    module.documented, module.undocumented, module.CONSTANT = documented, undocumented, 3
    assert sorted(_public_objects(module)) == [
        "fake_public_module.documented",
        "fake_public_module.undocumented",
    ]


# --------------------------------------------------------------------------- the site
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_strictly_with_every_page(site: Path) -> None:
    for page in (
        "index.html",
        "quickstart/index.html",
        "losses/index.html",
        "nn/index.html",
        "checked/index.html",
        "parity/index.html",
        "train/index.html",
        "precision/index.html",
        "benchmarks/index.html",
        "cli/index.html",
        "development/index.html",
    ):
        assert (site / page).is_file(), page


def test_site_documents_every_exported_function(site: Path) -> None:
    import jaxloss

    html = "".join(p.read_text() for p in site.rglob("*.html"))
    functions = [n for n in jaxloss.__all__ if inspect.isfunction(inspect.unwrap(getattr(jaxloss, n)))]
    assert "cross_entropy" in functions and "from_torch" in functions
    undocumented = [n for n in functions if f'id="jaxloss.{n}"' not in html]
    assert not undocumented, (
        f"exported but on no page (add `::: jaxloss.NAME` to a docs/losses/ page): {undocumented}"
    )


def test_site_has_no_raw_rest_markup(site: Path) -> None:
    leaks = []
    for page in site.rglob("*.html"):
        text = page.read_text()
        # A bare ">>>" example is read by Markdown as nested block quotes.
        for marker in (
            ":func:`",
            ":class:`",
            ":mod:`",
            ":meth:`",
            ":data:`",
            ".. math::",
            "<blockquote>\n<blockquote>",
        ):
            if marker in text:
                leaks.append(f"{page.relative_to(site)}: {marker!r}")
        if re.search(r"={3,}[ \t]+={3,}", text):  # a reST simple table's border
            leaks.append(f"{page.relative_to(site)}: a reST table")
    assert not leaks, "reST markup rendered as text (see docs/_ext/rst_to_markdown.py):\n" + "\n".join(leaks)


def test_rest_markup_becomes_markdown() -> None:
    # The docstrings' reST, as the site's Griffe extension rewrites it (docs/_ext/rst_to_markdown.py).
    import importlib.util

    import griffe

    spec = importlib.util.spec_from_file_location(
        "rst_to_markdown", ROOT / "docs" / "_ext" / "rst_to_markdown.py"
    )
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    func = griffe.Function("f", parent=griffe.Module("jaxloss"))
    doc = "\n".join(  # noqa: FLY002  (one docstring line per item reads better than one long literal)
        [
            "See :func:`jaxloss.l1_loss`, :func:`helper`, :class:`~jax.Array`; calls __call__.",
            "",
            ".. math:: \\ell = |x - y|",
            "",
            ".. math::",
            "    a &= b \\\\",
            "    c &= d",
            "",
            "Usage::",
            "",
            "    python -m jaxloss.parity --loss l1_loss",
            "",
            ">>> 1 + 1  # doctest: +ELLIPSIS",
            "2",
            "",
            "Mode",
            "    what the mode does.",
            "",
            "Args:",
            "    a, b: two inputs.",
            "",
            "Example:",
            "    >>> 2 + 2",
            "    4",
        ]
    )
    md = ext.rst_to_markdown(func, doc)
    assert '<autoref identifier="jaxloss.l1_loss" optional><code>jaxloss.l1_loss</code></autoref>' in md
    assert 'identifier="jaxloss.helper"' in md and "`Array`" in md and "`__call__`" in md
    assert "$$\n\\ell = |x - y|\n$$" in md
    assert "$$\n\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}\n$$" in md
    assert "Usage:\n\n```bash\npython -m jaxloss.parity --loss l1_loss\n```" in md
    assert "```pycon\n>>> 1 + 1\n2\n```" in md
    assert "**Mode**\nwhat the mode does." in md
    assert "    a: two inputs.\n    b: two inputs." in md
    assert md.endswith("Examples:\n    >>> 2 + 2\n    4")  # Griffe renders its own Examples section
    assert ":func:" not in md and ".. math::" not in md and "::\n" not in md


def test_rest_simple_table_becomes_a_markdown_table() -> None:
    # train.cli's exit codes, train.conv's timings: a header, a row continued in the first
    # column's blank, a role inside a cell (converted after the columns are cut), a "|" escaped.
    import importlib.util

    import griffe

    spec = importlib.util.spec_from_file_location(
        "rst_to_markdown", ROOT / "docs" / "_ext" / "rst_to_markdown.py"
    )
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    doc = "\n".join(  # noqa: FLY002  (as above)
        [
            "Codes:",
            "",
            "=====  ==========================",
            "code   meaning",
            "=====  ==========================",
            "0      done, see :func:`jaxloss.l1_loss`",
            "       and more",
            "2      a | b",
            "=====  ==========================",
            "",
            "After.",
        ]
    )
    md = ext.rst_to_markdown(griffe.Module("jaxloss"), doc)
    assert "| code | meaning |\n|---|---|\n" in md
    assert '| 0 | done, see <autoref identifier="jaxloss.l1_loss" optional>' in md
    assert "</code></autoref> and more |" in md
    assert "| 2 | a \\| b |" in md
    assert "=====" not in md and md.endswith("\n\nAfter.")


def _page_text(site: Path, page: str) -> str:
    """A page's text: tags dropped, entities decoded, whitespace collapsed."""
    text = re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text())
    return html.unescape(re.sub(r"\s+", " ", text)).replace("( ", "(")  # with or without line breaks


def test_site_shows_signatures(site: Path) -> None:
    # Functions and the jaxloss.nn dataclasses (made by a project decorator) show their parameters.
    assert 'l1_loss(input: Array, target: Array, reduction: Reduction = "mean"' in _page_text(
        site, "losses/regression"
    )
    nn_text = _page_text(site, "nn")
    assert "CrossEntropyLoss(weight: Array | None = None, ignore_index: int = -100" in nn_text
    assert "GaussianNLLLoss(*, full: bool = False" in nn_text


# --------------------------------------------------------------------------- offline
# What a browser fetches for a page: scripts, stylesheets, preconnects/preloads, fonts and
# @imports inside the site's CSS. (Links a reader clicks, <a href>, are not fetched.)
FETCHED_IN_HTML = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FETCHED_IN_CSS = re.compile(r"(?:url\(\s*['\"]?|@import\s+['\"])([^'\")\s]+)", re.IGNORECASE)


def fetched_urls(site: Path) -> dict[str, set[str]]:
    """``{url: {pages}}`` for everything the built site's pages and stylesheets load."""
    urls: dict[str, set[str]] = {}
    for page in site.rglob("*.html"):
        for url in FETCHED_IN_HTML.findall(page.read_text()):
            urls.setdefault(html.unescape(url), set()).add(str(page.relative_to(site)))
    for sheet in site.rglob("*.css"):
        for url in FETCHED_IN_CSS.findall(sheet.read_text()):
            urls.setdefault(url, set()).add(str(sheet.relative_to(site)))
    return urls


def _is_external(url: str) -> bool:
    return bool(re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", url, re.IGNORECASE)) and not url.lower().startswith("data:")


def test_offline_check_sees_external_urls() -> None:
    # The check below must be able to fail: a CDN script, a protocol-relative font, a CSS @import.
    assert _is_external("https://unpkg.com/mathjax@3/es5/tex-mml-chtml.js")
    assert _is_external("//fonts.googleapis.com/css?family=Roboto")
    assert not _is_external("../vendor/katex/katex.min.js") and not _is_external("data:image/svg+xml;x")
    page = '<link rel="stylesheet" href="https://fonts.googleapis.com/css"><script src="a.js"></script>'
    assert FETCHED_IN_HTML.findall(page) == ["https://fonts.googleapis.com/css", "a.js"]
    assert FETCHED_IN_CSS.findall('@import "https://x.org/a.css";b{src:url(fonts/K.woff2)}') == [
        "https://x.org/a.css",
        "fonts/K.woff2",
    ]


def test_site_loads_nothing_from_the_network(site: Path) -> None:
    # The math (KaTeX, vendored in docs/vendor/katex) and the fonts must render offline.
    urls = fetched_urls(site)
    external = {url: sorted(pages)[:3] for url, pages in urls.items() if _is_external(url)}
    assert not external, f"the site fetches from other hosts (vendor it into docs/): {external}"


def test_site_ships_the_math_it_loads(site: Path) -> None:
    # Every page with a formula loads KaTeX and its stylesheet, and both files are in the site.
    page = (site / "losses" / "classification" / "index.html").read_text()
    assert 'class="arithmatex"' in page
    for asset in ("vendor/katex/katex.min.js", "vendor/katex/katex.min.css", "javascripts/katex.js"):
        assert asset in page, asset
        assert (site / asset).is_file(), asset
    fonts = FETCHED_IN_CSS.findall((site / "vendor" / "katex" / "katex.min.css").read_text())
    woff2 = [f for f in fonts if f.endswith(".woff2")]
    assert woff2 and all((site / "vendor" / "katex" / f).is_file() for f in woff2)


# Parses each formula with the vendored KaTeX, as docs/javascripts/katex.js does in the browser
# (argv: the katex.min.js path, then a JSON list of [tex, display] pairs; prints the errors).
KATEX_PARSE = """
const katex = require(process.argv[1]);
const formulas = JSON.parse(require("fs").readFileSync(0, "utf8"));
for (const [tex, display] of formulas) {
  try { katex.renderToString(tex, { displayMode: display, throwOnError: true }); }
  catch (e) { console.log(tex.slice(0, 80) + "  ->  " + e.message.split("\\n")[0]); }
}
"""
ARITHMATEX = re.compile(r'class="arithmatex">(.*?)</(?:span|div)>', re.DOTALL)


def site_formulas(site: Path) -> list[tuple[str, bool]]:
    """Every formula of the built site as ``(tex, display)``, the ``\\( \\)`` / ``\\[ \\]`` stripped."""
    formulas = []
    for page in sorted(site.rglob("*.html")):
        for raw in ARITHMATEX.findall(page.read_text()):
            tex = html.unescape(re.sub(r"<[^>]+>", "", raw)).strip()
            formulas.append((tex[2:-2], tex.startswith("\\[")))
    return formulas


def katex_errors(formulas: list[tuple[str, bool]], katex_js: Path) -> str:
    import json

    proc = subprocess.run(
        ["node", "-e", KATEX_PARSE, str(katex_js)],
        check=False,
        input=json.dumps(formulas),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run KaTeX outside a browser")
def test_every_formula_renders_in_the_vendored_katex(site: Path) -> None:
    katex_js = site / "vendor" / "katex" / "katex.min.js"
    assert katex_errors([("x_{", False)], katex_js), "a broken formula must be reported"
    formulas = site_formulas(site)
    assert len(formulas) > 10, "the losses' formulas are on the site"
    errors = katex_errors(formulas, katex_js)
    assert not errors, f"formulas KaTeX cannot typeset (shown in red on the site):\n{errors}"
