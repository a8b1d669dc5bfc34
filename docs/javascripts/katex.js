// Typesets the math of pymdownx.arithmatex (generic mode: \( \) inline, \[ \] display) with the
// KaTeX vendored in docs/vendor/katex, so formulas render without a network (no CDN).
// Only the elements arithmatex marked are touched: a "$" in prose or code stays text.
function typesetMath(root) {
  if (!window.katex) return;  // the script failed to load: the raw TeX stays readable
  for (const el of root.querySelectorAll(".arithmatex")) {
    const tex = el.textContent.trim();
    const display = tex.startsWith("\\[");
    // throwOnError: false shows a formula KaTeX cannot parse in red instead of dropping it.
    katex.render(tex.slice(2, -2), el, { displayMode: display, throwOnError: false });
  }
}

if (window.document$) {
  document$.subscribe(() => typesetMath(document));  // Material: after each page load
} else {
  document.addEventListener("DOMContentLoaded", () => typesetMath(document));
}
