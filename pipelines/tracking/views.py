"""Views: saved views of an experiment's runs page in the MLflow UI, made as data, so a link opens
the runs of one compare parent as bar charts grouped by arm.

Checked against the UI bundled with MLflow 3.17.2 (``mlflow/server/js/build/static/js``: the
shared-view hook in ``3878.*.chunk.js``, the saved-view envelope in module ``53787`` of
``3448.*.chunk.js``, the "Save view" dialog in ``5439.*.chunk.js``, the state keys in module ``1395``
of ``main.*.js``). A saved view is one experiment tag:

- key ``mlflow.sharedViewState.<share key>``; the UI opens it from
  ``#/experiments/<id>/runs?viewStateShareKey=<share key>`` (``compareRunsMode=CHART`` picks the
  chart view, as the UI's own share link does). A link that also names a search facet
  (``searchFilter``, ``orderByKey``, ...) is not read as a saved view.
- value: the envelope JSON ``{"name", "createdAt", "updatedAt", "state"}`` (times in ms since the
  epoch), which also lists the view by name in the page's saved-views menu. ``state`` is the JSON of
  the page state, either as is or as ``deflate;`` + base64 of its zlib-deflated UTF-8 bytes (what the
  UI writes when it compresses). The UI also reads a bare state, compressed or not, as the tag value.
- the state is one flat object: search facets (``searchFilter``, ``orderByKey``, ``orderByAsc``,
  ``startTime``, ``lifecycleFilter``, ``datasetsFilter``, ``modelVersionFilter``) and UI state
  (``groupBy``, ``compareRunCharts``, ``compareRunSections``, ``runsHiddenMode``,
  ``useGroupedValuesInCharts``, ``hideEmptyCharts``, ``chartsSearchFilter``, ...); keys left out take
  the UI's defaults. ``groupBy`` is ``{"aggregateFunction": "min" | "average" | "max",
  "groupByKeys": [{"mode": "tag" | "param" | "dataset", "groupByData": <name>}]}``.

Charts are bar cards (``{"type": "BAR", "metricKey", "metricSectionId", ...}``) in sections named by
the metric's prefix (``test/minority_recall`` is in ``test``), in the order given; sections and cards
marked reordered keep that order, and the UI appends cards for the runs' other metrics after them.
``chartsSearchFilter`` is a case-insensitive regular expression over the cards' metric keys. Runs
are sorted by the first metric: sorted by start time (or unsorted and unfiltered), the UI also loads
the parents of the runs it found, which would show the compare parent as an "Additional runs" group.
The tag value may hold 20000 characters. This module makes the tag and the link only; the caller
sets the tag on the experiment.
"""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from typing import Any, Sequence
from urllib.parse import urlencode

from pipelines.tracking.runs import MODEL_TRAINING_VIEW

SHARED_VIEW_PREFIX = "mlflow.sharedViewState."  # the UI's experiment-tag prefix for saved views
SHARE_KEY_PARAM = "viewStateShareKey"
COMPRESSED = "deflate;"  # the UI's marker of a deflated, base64 state
MODEL_METRICS = "Model metrics"  # the UI's section of metrics without a prefix
SYSTEM_METRICS = "System metrics"  # and of ``system/`` ones
MAX_VALUE = 20000  # the UI refuses to save a larger view; MLflow's limit for an experiment tag value
# the compare children's test metrics (pipelines.evaluation.compare.METRICS), the primary one first
DEFAULT_METRICS = ("test/minority_recall", "test/balanced_accuracy", "test/macro_f1", "test/g_mean",
                   "test/minority_pr_auc")


def grouped_chart_view(experiment_id: str, parent_run_id: str, group_tag: str = "arm",
                       metrics: Sequence[str] = DEFAULT_METRICS, aggregate: str = "average", *,
                       name: str | None = None, only_listed: bool = True, created_at: int | None = None,
                       compress: bool = True) -> tuple[str, str, str]:
    """A saved view of the child runs of ``parent_run_id`` as bar charts of ``metrics`` (first
    chart first) with the runs grouped by tag ``group_tag`` (mean, min or max per group), sorted by
    the first metric: ``(tag key, tag value, link)``, the link being the UI's path from ``#`` on, e.g.
    ``#/experiments/2/runs?viewStateShareKey=arm-<id>&compareRunsMode=CHART&workflowType=...``.

    ``only_listed`` sets the page's chart search (a regular expression) to ``metrics`` alone; without
    it the UI adds a chart for every other metric of the runs after them. ``name`` is the view's
    name in the saved-views menu; ``created_at`` is ms since the epoch (default now); ``compress``
    deflates the state as the UI does."""
    if aggregate not in ("min", "average", "max"):
        raise ValueError(f"aggregate must be min, average or max, not {aggregate!r}")
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ValueError("a chart view needs at least one metric")
    share_key = f"{_safe(group_tag)}-{_safe(parent_run_id)}"
    state = {
        "searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'",
        # sorting by a metric also keeps the parent out: sorted by start time, the UI adds the
        # parents of the runs it found (shouldFetchParents)
        "orderByKey": f"metrics.`{metrics[0]}`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "groupBy": {"aggregateFunction": aggregate, "groupByKeys": [{"mode": "tag", "groupByData": group_tag}]},
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "runsHiddenMode": "SHOW_ALL",
        "chartsSearchFilter": "^(" + "|".join(re.escape(m) for m in metrics) + ")$" if only_listed else "",
        **_charts(metrics, share_key),
    }
    payload = json.dumps(state, separators=(",", ":"))
    if compress:
        payload = COMPRESSED + base64.b64encode(zlib.compress(payload.encode("utf-8"), 9)).decode("ascii")
    stamp = int(time.time() * 1000) if created_at is None else int(created_at)
    title = name or f"Charts by {group_tag}: children of {parent_run_id[:8]}"
    value = json.dumps({"name": title, "createdAt": stamp, "updatedAt": stamp, "state": payload})
    if len(value) > MAX_VALUE:
        raise ValueError(f"the view is {len(value)} characters; an experiment tag holds {MAX_VALUE}")
    query = urlencode({SHARE_KEY_PARAM: share_key, "compareRunsMode": "CHART"})
    return SHARED_VIEW_PREFIX + share_key, value, f"#/experiments/{experiment_id}/runs?{query}&{MODEL_TRAINING_VIEW}"


def view_state(value: str) -> dict[str, Any]:
    """The page state a saved-view tag value holds, read as the UI reads it (envelope or bare state,
    compressed or not)."""
    try:
        envelope = json.loads(value)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and isinstance(envelope.get("state"), str) and "name" in envelope:
        value = envelope["state"]
    if value.startswith(COMPRESSED):
        value = zlib.decompress(base64.b64decode(value[len(COMPRESSED):])).decode("utf-8")
    return json.loads(value)


def section_name(metric: str) -> str:
    """The chart section the UI puts ``metric`` in: its prefix up to the last ``/``."""
    prefix = metric.rpartition("/")[0]
    if not prefix:
        return MODEL_METRICS
    return SYSTEM_METRICS if prefix == "system" else prefix


def _charts(metrics: Sequence[str], share_key: str) -> dict[str, Any]:
    """Bar cards of ``metrics`` in order, their sections in order (marked reordered, so the UI
    appends the runs' other metrics and sections after them) and the UI's two standing sections."""
    names = list(dict.fromkeys([section_name(m) for m in metrics] + [MODEL_METRICS, SYSTEM_METRICS]))
    ids = {section: f"{share_key}-section-{i}" for i, section in enumerate(names)}
    ordered = {section_name(m) for m in metrics}
    sections = [{"uuid": ids[s], "name": s, "display": True, "isReordered": s in ordered, "deleted": False,
                 "isGenerated": s not in ordered} for s in names]
    charts = [{"uuid": f"{share_key}-chart-{i}", "type": "BAR", "runsCountToCompare": 20,
               "metricSectionId": ids[section_name(metric)], "deleted": False, "isGenerated": False,
               "metricKey": metric, "displayName": metric.rpartition("/")[2] or metric}
              for i, metric in enumerate(metrics)]
    return {"compareRunCharts": charts, "compareRunSections": sections, "isAccordionReordered": True}


def _safe(text: str) -> str:
    """``text`` as part of a tag key and a URL: letters, digits, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)
