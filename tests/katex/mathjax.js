// Reads a JSON list of {tex, display} from stdin; prints a JSON list of error messages (null when fine).
// MathJax 3, as GitHub renders Markdown maths: TeX input with the base, AMS and boldsymbol packages
// (what an autoloading MathJax loads for these pages), an undefined macro or a TeX error an error.
const { mathjax } = require("mathjax-full/js/mathjax.js");
const { TeX } = require("mathjax-full/js/input/tex.js");
const { SVG } = require("mathjax-full/js/output/svg.js");
const { liteAdaptor } = require("mathjax-full/js/adaptors/liteAdaptor.js");
const { RegisterHTMLHandler } = require("mathjax-full/js/handlers/html.js");
require("mathjax-full/js/input/tex/base/BaseConfiguration.js");
require("mathjax-full/js/input/tex/ams/AmsConfiguration.js");
require("mathjax-full/js/input/tex/boldsymbol/BoldsymbolConfiguration.js");

const adaptor = liteAdaptor();
RegisterHTMLHandler(adaptor);
const tex = new TeX({
  packages: ["base", "ams", "boldsymbol"],
  formatError: (jax, err) => { throw err; },
});
const doc = mathjax.document("", { InputJax: tex, OutputJax: new SVG({ fontCache: "none" }) });

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const results = JSON.parse(input).map(({ tex: source, display }) => {
    try {
      const node = doc.convert(source, { display });
      const html = adaptor.outerHTML(node);
      if (html.includes("data-mjx-error") || html.includes("merror")) {
        return "MathJax marked an error: " + html.slice(0, 200);
      }
      return null;
    } catch (err) {
      return String(err.message || err);
    }
  });
  process.stdout.write(JSON.stringify(results));
});
