"""Screenshots of the MLflow UI for the docs: an MLflow server on a store, headless Chromium driven
over the DevTools protocol, one PNG per page (the latest compare parent, its children as charts
grouped by arm through the saved view of :mod:`pipelines.tracking.views`, the augment run's
description and sample images, the model registry).

    python -m benchmarks.screenshots --store sqlite:////tmp/shots/mlflow/mlflow.db --out docs/screenshots

Runs are found through the server's REST API; the grouped view's experiment tag is set through it
when the store has none. Talks to MLflow over HTTP only (no ``mlflow`` import).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from websockets.sync.client import connect

from pipelines.tracking.comparison import CHART_VIEW_TAG
from pipelines.tracking.runs import DESCRIPTION_TAG, EXPERIMENTS, MODEL_TRAINING_VIEW
from pipelines.tracking.views import grouped_chart_view

WIDTH, HEIGHT = 1500, 1100
PARENT_TAG = "mlflow.parentRunId"
SAMPLES = "samples/trained"  # the augment run's image series of the trained generator's samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    """``check()``'s first truthy result, polled until ``timeout`` seconds; TimeoutError names ``what``."""
    end = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            result = None
        if result:
            return result
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: nothing after {timeout:.0f} s")
        time.sleep(interval)


def start(command: Sequence[str], log: Path) -> subprocess.Popen:
    """``command`` in its own process group, output to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """End a process group this script started, politely first."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Rest:
    """The tracking server's REST API (``/api/2.0/mlflow``) over urllib."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def call(self, endpoint: str, body: dict | None = None, **query) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def experiment(self, name: str) -> dict | None:
        try:
            return self.call("experiments/get-by-name", experiment_name=name)["experiment"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def runs(self, experiment_ids: Sequence[str], filter: str = "", max_results: int = 10) -> list[dict]:
        body = {"experiment_ids": list(experiment_ids), "filter": filter, "max_results": max_results,
                "order_by": ["attributes.start_time DESC"]}
        return self.call("runs/search", body).get("runs", [])

    def run(self, run_id: str) -> dict:
        return self.call("runs/get", run_id=run_id)["run"]


def tags(entity: dict) -> dict[str, str]:
    """``{key: value}`` of a REST run's or experiment's tags."""
    listed = entity.get("data", entity).get("tags", [])
    return {t["key"]: t.get("value", "") for t in listed}


class Browser:
    """One headless Chromium page over the DevTools protocol."""

    def __init__(self, chromium: str, log: Path) -> None:
        self.profile = tempfile.mkdtemp(prefix="ganpipe-chromium-")
        port = free_port()
        self.process = start([chromium, "--headless=new", f"--remote-debugging-port={port}",
                              f"--user-data-dir={self.profile}", f"--window-size={WIDTH},{HEIGHT}", "--no-sandbox",
                              "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
                              "--force-device-scale-factor=1", "about:blank"], log)
        targets = wait_until(lambda: [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                                                  timeout=5)) if t["type"] == "page"],
                             60, "Chromium's DevTools endpoint")
        self.socket = connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.next_id = 0
        self.send("Page.enable")
        # the UI's local settings, as a returning user has them: the assistant panel shut (it opens
        # itself on a first visit), the registry's promotion dismissed, the model-training view
        settings = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True, "mlflow.assistant.panelOpen_v1": False,
                    "_mlflow_model_registry_promo_modal_dismissed_v1": True,
                    "mlflow.workflowType_v1": "machine_learning"}
        self.send("Page.addScriptToEvaluateOnNewDocument", source="try { " + " ".join(
            f"localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});" for k, v in settings.items())
            + " } catch (e) {}")
        self.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive between the answers; only the answer to this call matters
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, expect: Sequence[str], timeout: float, selector: str | None = None) -> None:
        """Load ``url`` and wait until the page's text holds every string of ``expect`` (and
        ``selector`` matches, when given), then for the page to settle."""
        self.send("Page.navigate", url=url)
        probe = (f"(() => {{ const t = document.body ? document.body.innerText : '';"
                 f" return {json.dumps(list(expect))}.every(s => t.includes(s))"
                 + (f" && document.querySelectorAll({json.dumps(selector)}).length > 0" if selector else "")
                 + "; })()")
        wait_until(lambda: self.evaluate(probe), timeout, f"{url} showing {list(expect)}")
        time.sleep(2)  # charts and images draw after their text

    def wait_for(self, expression: str, timeout: float, what: str) -> None:
        """Wait until the page's JavaScript ``expression`` is true, then for the page to settle."""
        wait_until(lambda: self.evaluate(expression), timeout, what)
        time.sleep(1)

    def type_into(self, selector: str, text: str) -> None:
        """Type ``text`` into the first element matching ``selector``, as a user would."""
        if not self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                             " if (!e) return false; e.focus(); return true; })()"):
            raise RuntimeError(f"nothing to type into: {selector}")
        self.send("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            stop(self.process)
            shutil.rmtree(self.profile, ignore_errors=True)


# A run's description in full: its "Show more" opened, and its markdown tables scrolling within the
# page (a table wider than the page would push the "About this run" column, with the tags, out of it).
FULL_DESCRIPTION = """(() => {
  document.querySelectorAll('.note-editor-preview-content table').forEach(t => {
    t.style.display = 'block'; t.style.overflowX = 'auto'; t.style.maxWidth = '100%';
    for (let e = t.parentElement; e && e !== document.body; e = e.parentElement) e.style.minWidth = '0';
  });
  [...document.querySelectorAll('button')].filter(b => b.innerText.trim() === 'Show more').forEach(b => b.click());
  return true;
})()"""
# image charts without the run's parameters the UI prints under the run's name (they hide the image)
IMAGES_ONLY = """(() => {
  document.querySelectorAll('[data-testid=experiment-view-compare-runs-card] [tooltip-data-state] > div:nth-child(2)')
    .forEach(e => { e.style.display = 'none'; });
  return true;
})()"""
IMAGES_SHOWN = "[...document.images].filter(i => i.complete && i.naturalWidth > 0 && i.width > 100).length > 0"
CHART_SEARCH = 'input[placeholder="Search metric charts"]'


def latest_parent(rest: Rest, experiment_ids: Sequence[str]) -> dict:
    """The most recent run that has children in ``experiment_ids`` (the compare parent)."""
    children = rest.runs(experiment_ids, f"tags.`{PARENT_TAG}` LIKE '%'", max_results=1)
    if not children:
        raise SystemExit(f"no compare parent run (a run with child runs) in experiments {list(experiment_ids)}")
    return rest.run(tags(children[0])[PARENT_TAG])


def latest_augment(rest: Rest, experiment_ids: Sequence[str]) -> dict:
    """The most recent run with logged images (the augment run)."""
    runs = rest.runs(experiment_ids, "tags.`mlflow.loggedImages` = 'True'", max_results=1)
    if not runs:
        raise SystemExit(f"no augment run (a run with logged images) in experiments {list(experiment_ids)}")
    return runs[0]


def shared_view(rest: Rest, experiment_id: str, parent_id: str) -> str:
    """The link of the grouped chart view of ``parent_id``'s children, its tag set when missing."""
    key, value, link = grouped_chart_view(experiment_id, parent_id)
    experiment = rest.call("experiments/get", experiment_id=experiment_id)["experiment"]
    if key not in tags(experiment):
        rest.call("experiments/set-experiment-tag", {"experiment_id": experiment_id, "key": key, "value": value})
    return link


def score_gallery(rest: Rest, base: str, experiment_id: str, shot, browser: Browser, timeout: float) -> None:
    """The latest score run with a gallery: ``figures/top_anomalies.png`` (the most anomalous flagged
    items beside their anomaly maps) among its artifacts."""
    for run in rest.runs([experiment_id], max_results=20):
        info = run["info"]
        figures = [f["path"] for f in rest.call("artifacts/list", run_id=info["run_id"], path="figures").get("files", [])]
        if "figures/top_anomalies.png" not in figures:
            continue
        page = f"{base}/#/experiments/{experiment_id}/runs/{info['run_id']}/artifacts"
        shot("score-gallery.png", f"{page}/figures/top_anomalies.png?{MODEL_TRAINING_VIEW}", ["top_anomalies.png"],
             f"score run {info['run_name']}: the gallery of the most anomalous flagged items with their maps",
             then=lambda: browser.wait_for(IMAGES_SHOWN, timeout, "the gallery"))
        return


def first_line(text: str, limit: int = 40) -> str:
    """A short piece of ``text`` the page shows verbatim (markdown marks stripped)."""
    line = next((l for l in text.splitlines() if l.strip()), "")
    words = line.replace("*", "").replace("`", "").split()
    return " ".join(words[:4])[:limit]


def take(base: str, browser: Browser, out: Path, timeout: float) -> list[tuple[str, str]]:
    """Every screenshot: ``(file name, what it shows)``."""
    rest = Rest(base)
    experiments = {kind: rest.experiment(EXPERIMENTS[kind]) for kind in ("compare", "augment", "demo", "score")}
    found = {kind: e["experiment_id"] for kind, e in experiments.items() if e}
    compare_ids = [found[kind] for kind in ("compare", "demo") if kind in found]
    augment_ids = [found[kind] for kind in ("augment", "demo") if kind in found]
    shots = []

    def shot(name: str, url: str, expect: Sequence[str], what: str, selector: str | None = None, then=None):
        browser.open(url, expect, timeout, selector)
        if then:
            then()
            time.sleep(1.5)
        browser.screenshot(out / name)
        shots.append((name, what))
        print(f"{out / name}: {what}", flush=True)

    if "score" in found:
        score_gallery(rest, base, found["score"], shot, browser, timeout)
    if not compare_ids:  # a store with scores only (the gallery above)
        return shots
    parent = latest_parent(rest, compare_ids)
    info, parent_tags = parent["info"], tags(parent)
    experiment_id, parent_id = info["experiment_id"], info["run_id"]
    run_page = f"{base}/#/experiments/{experiment_id}/runs/{parent_id}?{MODEL_TRAINING_VIEW}"
    shot("compare-parent.png", run_page, [info["run_name"], first_line(parent_tags.get(DESCRIPTION_TAG, "")), "best_arm"],
         f"compare parent {info['run_name']} ({parent_id}): description with the verdict and table, tags",
         then=lambda: browser.evaluate(FULL_DESCRIPTION))

    # the view the compare run saved (its tag links to it), else one made here for an older store
    saved = parent_tags.get(CHART_VIEW_TAG, "")
    link = saved[saved.index("#"):] if "#" in saved else shared_view(rest, experiment_id, parent_id)
    shot("compare-by-arm.png", f"{base}/{link}", ["minority_recall", "gan", "none"],
         f"children of {parent_id} as charts grouped by tag arm (mean)", selector=".js-plotly-plot")

    augment = latest_augment(rest, augment_ids)
    a_info, a_tags = augment["info"], tags(augment)
    a_page = f"{base}/#/experiments/{a_info['experiment_id']}/runs/{a_info['run_id']}"
    shot("augment-run.png", f"{a_page}?{MODEL_TRAINING_VIEW}",
         [a_info["run_name"], first_line(a_tags.get(DESCRIPTION_TAG, ""))],
         f"augment run {a_info['run_name']}: description with the sample quality table",
         then=lambda: browser.evaluate(FULL_DESCRIPTION))

    def only_images():  # the chart search hides every metric chart; image charts always show
        browser.type_into(CHART_SEARCH, f"^{SAMPLES}$")
        browser.wait_for(IMAGES_SHOWN, timeout, "the sample images")
        browser.evaluate(IMAGES_ONLY)

    shot("augment-samples.png", f"{a_page}/model-metrics?{MODEL_TRAINING_VIEW}", [a_info["run_name"]],
         f"augment run {a_info['run_name']}: its sample grids by step ({SAMPLES} and the training series)",
         selector=CHART_SEARCH, then=only_images)
    figures = [f["path"] for f in rest.call("artifacts/list", run_id=a_info["run_id"], path="figures").get("files", [])
               if f["path"].endswith(".png")]
    if figures:
        shot("augment-figure.png", f"{a_page}/artifacts/{figures[0]}?{MODEL_TRAINING_VIEW}", [figures[0]],
             f"augment run {a_info['run_name']}: the labelled sample figure {figures[0]} (real images, then GAN samples)",
             then=lambda: browser.wait_for(IMAGES_SHOWN, timeout, "the figure"))

    models = rest.call("registered-models/search", max_results=100).get("registered_models", [])
    if models:
        model = max(models, key=lambda m: int(m.get("last_updated_timestamp", 0)))
        shot("models.png", f"{base}/#/models", [model["name"]], "model registry: registered models")
        shot("model.png", f"{base}/#/models/{urllib.parse.quote(model['name'])}", [model["name"], "Version"],
             f"registered model {model['name']}: description and versions")
    return shots


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="backend store URI, e.g. sqlite:////path/mlflow.db")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="artifact folder of the store (default: artifacts/ beside a SQLite file)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to wait for each page")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts
    if artifacts is None and args.store.startswith("sqlite:///"):
        artifacts = Path(args.store[len("sqlite:///"):]).parent / "artifacts"
    logs = Path(tempfile.mkdtemp(prefix="ganpipe-screenshots-"))
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", args.store, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    if artifacts is not None:
        command += ["--artifacts-destination", str(artifacts), "--serve-artifacts"]
    server = start(command, logs / "mlflow.log")
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: server.poll() is not None or urllib.request.urlopen(f"{base}/health", timeout=5).status == 200,
                   120, "MLflow server")
        if server.poll() is not None:
            raise SystemExit(f"mlflow server ended (status {server.returncode}); see {logs / 'mlflow.log'}")
        browser = Browser(args.chromium, logs / "chromium.log")
        take(base, browser, args.out, args.timeout)
    finally:
        if browser is not None:
            browser.close()
        stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
