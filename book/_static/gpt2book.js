/* The GPT-2 book: code that wraps keeps its indentation.

   A narrow window (a phone) cannot show an 88-character line, so code blocks wrap (gpt2book.css) instead of
   scrolling sideways. A wrapped Python line must not restart at column 0, where it would read as broken code:
   each line of a code block becomes a block whose continuation lines hang under the line's first character
   (padding-left = indentation + 2 characters, text-indent = minus that). The highlighting spans are kept: a
   span that crosses lines (a docstring) is cloned into each line it covers. The newlines stay in the text, in
   undrawn spans between the lines, so the text and a copy of it are unchanged. */
(function () {
  function splitLines(pre) {
    const lines = [[]];
    function walk(node, ancestors) {
      if (node.nodeType === Node.TEXT_NODE) {
        node.textContent.split("\n").forEach((piece, i) => {
          if (i > 0) lines.push([]);
          if (!piece) return;
          let inner = document.createTextNode(piece);
          for (let k = ancestors.length - 1; k >= 0; k--) {
            const clone = ancestors[k].cloneNode(false);
            clone.appendChild(inner);
            inner = clone;
          }
          lines[lines.length - 1].push(inner);
        });
      } else if (node.nodeType === Node.ELEMENT_NODE) {
        for (const child of Array.from(node.childNodes)) walk(child, ancestors.concat([node]));
      }
    }
    for (const child of Array.from(pre.childNodes)) walk(child, []);
    if (lines.length > 1 && lines[lines.length - 1].length === 0) lines.pop();  // the final newline
    return lines;
  }

  function hang(pre) {
    if (pre.dataset.gpt2bookLines) return;
    const lines = splitLines(pre);
    const out = document.createDocumentFragment();
    lines.forEach((nodes, i) => {
      if (i > 0) {  // the newline stays in the text (and in a copy of it) but is not drawn: the blocks break lines
        const newline = document.createElement("span");
        newline.className = "gb-nl";
        newline.textContent = "\n";
        out.appendChild(newline);
      }
      const line = document.createElement("span");
      line.className = "gb-line";
      nodes.forEach((n) => line.appendChild(n));
      const indent = (line.textContent.match(/^ */) || [""])[0].length + 2;
      line.style.paddingLeft = indent + "ch";
      line.style.textIndent = -indent + "ch";
      out.appendChild(line);
    });
    pre.replaceChildren(out);
    pre.dataset.gpt2bookLines = String(lines.length);
    pre.classList.add("gb-hanging");
  }

  function run() {
    document.querySelectorAll("div.highlight pre, div.cell_output pre, div.output pre").forEach(hang);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();

/* The paper-claims ledger: a status filter above the list of claims (all, or one status). Each claim is a <dt>
   with its status badge, followed by its <dd>s; the filter shows or hides them together. */
(function () {
  function setup() {
    const heads = Array.from(document.querySelectorAll("article dl.myst > dt")).filter(
      (dt) => dt.querySelector("span.sd-badge") && dt.querySelector("small code"));
    if (heads.length < 10 || document.querySelector(".gb-ledger-filter")) return;
    const status = (dt) => dt.querySelector("span.sd-badge").textContent.trim();
    const statuses = [...new Set(heads.map(status))];
    const bar = document.createElement("div");
    bar.className = "gb-ledger-filter";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Show claims by status");
    const show = (wanted) => {
      for (const dt of heads) {
        const visible = wanted === "all" || status(dt) === wanted;
        for (let el = dt; el && (el === dt || el.tagName === "DD"); el = el.nextElementSibling)
          el.hidden = !visible;
      }
      bar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.value === wanted)));
    };
    for (const value of ["all", ...statuses]) {
      const button = document.createElement("button");
      button.type = "button";
      button.value = value;
      const n = value === "all" ? heads.length : heads.filter((dt) => status(dt) === value).length;
      button.textContent = `${value} (${n})`;
      button.addEventListener("click", () => show(value));
      bar.appendChild(button);
    }
    heads[0].closest("dl").before(bar);
    show("all");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
