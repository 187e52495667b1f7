"""Headless Chromium (Debian's package) for tests that open a `snakemake --report` page.

Snakemake 9 reports are a single-page React app: the HTML file holds the results as data and the app
renders menus, tables and images only when clicked. ``click_through`` appends a small script to a copy
of the report that clicks as a user would (a menu entry by its text, a result's view button by its
label), and records what the app then displays (the image it shows) in attributes of <body>; Chromium's
--dump-dom returns the page after its JavaScript ran, so the test reads the rendered DOM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")

CLICKER = """<script>
(function () {
  const steps = %s;
  function leaf(text) {
    return Array.from(document.querySelectorAll("a, button, span, td, li")).find(
      (el) => el.children.length === 0 && el.textContent.trim() === text);
  }
  function run(step, k) {
    if (step[0] === "menu") {
      const el = leaf(step[1]);
      if (el) { el.click(); document.body.setAttribute("data-step-" + k, "clicked"); }
    } else if (step[0] === "view") {
      const cell = leaf(step[1]);
      const row = cell && cell.closest("tr");
      const button = row && row.querySelector("a[iconname=eye]");
      if (button) { button.click(); document.body.setAttribute("data-step-" + k, "clicked"); }
    }
  }
  function record(step, k) {
    if (step[0] === "view") {
      const shown = Array.from(document.querySelectorAll("img")).filter((img) => img.src.startsWith("data:image/png"));
      if (shown.length) { document.body.setAttribute("data-shown-" + k, shown[shown.length - 1].src); }
    }
  }
  let k = 0;
  function next() {
    if (k > 0) { record(steps[k - 1], k - 1); }
    if (k < steps.length) { run(steps[k], k); k += 1; setTimeout(next, 1000); }
  }
  window.addEventListener("load", () => setTimeout(next, 1000));
})();
</script>"""


def chromium() -> str:
    """The Chromium binary; installs Debian's ``chromium`` with apt-get when missing (about 100 s here)."""
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0:
        raise RuntimeError("Chromium is not installed and installing it needs root: apt-get install chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
    return shutil.which("chromium")


def click_through(report: Path, steps: list[tuple[str, str]], workdir: Path) -> str:
    """The DOM of ``report`` after the app ran ``steps``: ("menu", text) clicks a menu entry, ("view", label)
    the view button of the result labelled so; step k sets body attribute data-step-k="clicked" and a
    view step data-shown-k = the PNG data URI then displayed."""
    html = report.read_text()
    end = html.rindex("</body>")
    page = workdir / "report_clicked.html"
    page.write_text(html[:end] + CLICKER % json.dumps(steps) + html[end:])
    budget_ms = 3000 + 1000 * len(steps)
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={workdir / 'chromium'}",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def body_attributes(dom: str) -> dict[str, str]:
    """The attributes of the rendered page's <body> tag."""
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body))


def visible_text(dom: str) -> str:
    """The text of the rendered page without scripts and styles (the report's data lives in scripts)."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())
