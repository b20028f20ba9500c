// Render the \( \) and \[ \] that Sphinx writes for math with the local KaTeX.
document.addEventListener("DOMContentLoaded", function () {
  renderMathInElement(document.body, {
    delimiters: [
      { left: "\\[", right: "\\]", display: true },
      { left: "\\(", right: "\\)", display: false },
    ],
    ignoredClasses: ["highlight", "literal-block"],
    throwOnError: false,
  });
});
