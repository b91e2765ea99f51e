"""Headless Chromium for the book's browser check, driven over the DevTools protocol.

The protocol runs on a pipe (``--remote-debugging-pipe``: commands go to the browser's fd 3, replies and events
come back on its fd 4, each a JSON message ended by a NUL byte), so no port, no websocket library and no
network are needed. The network is blocked for every page: host names resolve to nothing and the proxy points
at a closed local port, so a page that needs a CDN shows what an offline reader sees.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

NO_NETWORK = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
              "--proxy-bypass-list=<-loopback>")

# Blocks that must fit the content column: code cells, text outputs, tables, display math. A block overflows when
# its content is wider than its box (it scrolls or clips sideways), or when its box reaches past the column.
OVERFLOW_JS = r"""((allowScroll = false) => {
  const column = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const right = column.getBoundingClientRect().right;
  const found = [];
  const blocks = 'pre, div.highlight, div.cell_output, div.output, table, div.pst-scrollable-table-container, '
                 + 'div.math, mjx-container[display="true"]';
  for (const el of document.querySelectorAll(blocks)) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || el.closest('details:not([open])')) continue;  // not shown (a closed toggle)
    const wider = el.scrollWidth - el.clientWidth, past = box.right - right;
    // a display formula may scroll inside its own box at a phone's width (MathJax 3 cannot break lines)
    const scrolls = el.matches('mjx-container[display="true"]') && past <= 1
                    && getComputedStyle(el).overflowX === 'auto';
    if ((wider > 1 && !(scrolls && allowScroll)) || past > 1) {
      const lines = (el.innerText || '').split('\n').sort((a, b) => b.length - a.length);
      found.push(`<${el.tagName.toLowerCase()} class="${el.className}">: ${Math.max(wider, past).toFixed(0)} px too `
                 + `wide, longest line ${JSON.stringify(lines[0].slice(0, 100))}`);
    }
  }
  return {column: column.clientWidth, found};
})(ALLOW_SCROLL)"""
# At a phone's width a formula that scrolls inside its own box is not an overflow (the page does not move).
OVERFLOW_PHONE_JS = OVERFLOW_JS.replace("(ALLOW_SCROLL)", "(true)")
OVERFLOW_JS = OVERFLOW_JS.replace("(ALLOW_SCROLL)", "()")

# Math: after MathJax's typesetting, every math node of the page holds a rendered <mjx-container>, and the
# article's text shows no raw TeX delimiters.
MATH_JS = r"""(async () => {
  const start = Date.now(), wanted = document.querySelector('span.math, div.math, script[src*="mathjax"]');
  while (wanted && !(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - start < 10000)
    await new Promise(r => setTimeout(r, 100));
  const loaded = !!(window.MathJax && MathJax.startup && MathJax.startup.promise);
  if (loaded) await MathJax.startup.promise;
  const nodes = [...document.querySelectorAll('span.math, div.math')];
  const raw = nodes.filter(n => !n.querySelector('mjx-container')).map(n => n.textContent.slice(0, 80));
  const walk = document.createTreeWalker(document.querySelector('article') || document.body, NodeFilter.SHOW_TEXT);
  let text = '';  // prose only: code and outputs may hold backslashes and dollars of their own
  while (walk.nextNode())
    if (!walk.currentNode.parentElement.closest('pre, code, mjx-container, script, style'))
      text += walk.currentNode.textContent;
  const src = [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));
  return {loaded, nodes: nodes.length, rendered: document.querySelectorAll('mjx-container').length, raw,
          rawDelimiters: (text.match(/\\\(|\\\[|\$\$/g) || []).length, src};
})()"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class Chromium:
    """One headless browser with one page, ``width`` px wide; ``with Chromium(binary) as browser: ...``."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, offline: bool = True):
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def pipes():  # in the child, before exec: the protocol's fds 3 and 4 (moved out of the way first)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe",
                 f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}",
                 *(NO_NETWORK if offline else ())]
        self.proc = subprocess.Popen([binary, *flags, "about:blank"], preexec_fn=pipes, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id = b"", 0
        target = self._send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                   deviceScaleFactor=1, mobile=False)
        self._send("Page.enable", session=True)

    def _send(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:  # events arrive between replies; they are not needed here
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self._send("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                            returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait until the document and its fonts are loaded."""
        self._send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        time.sleep(0.05)
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load in {timeout:.0f} s")
            time.sleep(0.05)
        self.evaluate("document.fonts.ready.then(() => true)")

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path, max_height: int = 16000) -> None:
        """A PNG of the whole page (up to ``max_height`` px tall) at the window's width."""
        width = self.evaluate("document.documentElement.clientWidth")
        height = min(self.evaluate("document.documentElement.scrollHeight"), max_height)
        data = self._send("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self._send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self._profile.cleanup()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The page itself: at a phone's width nothing may make the page scroll sideways.
PAGE_WIDTH_JS = r"""(() => {
  const doc = document.documentElement, wide = [];
  if (doc.scrollWidth > doc.clientWidth + 1)
    for (const el of document.querySelectorAll('article *')) {
      const box = el.getBoundingClientRect();
      if (box.right > doc.clientWidth + 1 && !el.closest('details:not([open])') && box.width > 0
          && ![...wide].some(w => w.el.contains(el)))
        wide.push({el, tag: el.tagName.toLowerCase(), cls: el.className, right: Math.round(box.right),
                   text: (el.innerText || '').slice(0, 80)});
    }
  return {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
          wide: wide.slice(0, 5).map(({el, ...rest}) => rest)};
})()"""

# Figures of the article: every image with its alt text, its drawn and natural width, and its figure caption.
FIGURES_JS = r"""(() => [...document.querySelectorAll('article.bd-article img')].map(img => {
  const figure = img.closest('figure');
  const caption = figure && figure.querySelector('figcaption');
  return {src: img.getAttribute('src'), alt: img.getAttribute('alt') || '', width: img.getBoundingClientRect().width,
          natural: img.naturalWidth, caption: caption ? caption.innerText.trim() : '',
          number: caption ? ((caption.querySelector('.caption-number') || {}).innerText || '') : ''};
}))()"""

# The claims ledger's status filter (book/_static/gpt2book.js): click each button, count the claims left shown and
# their statuses; null when the page has no filter.
LEDGER_FILTER_JS = r"""(() => {
  const bar = document.querySelector('div.gb-ledger-filter');
  if (!bar) return null;
  const heads = [...document.querySelectorAll('article dl.myst > dt')].filter(dt => dt.querySelector('span.sd-badge'));
  const status = dt => dt.querySelector('span.sd-badge').textContent.trim();
  const out = {};
  for (const button of bar.querySelectorAll('button')) {
    button.click();
    const shown = heads.filter(dt => !dt.hidden);
    out[button.value] = {shown: shown.length, statuses: [...new Set(shown.map(status))].sort(),
                         label: button.textContent};
  }
  bar.querySelector('button[value="all"]').click();
  return out;
})()"""
