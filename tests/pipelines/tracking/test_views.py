"""The grouped chart view of a compare parent's children: a saved-view tag the MLflow 3.17 UI reads
(envelope, deflated state), grouping by the arm tag, filtering to the parent's children, and a link
the UI opens as the chart view."""

from __future__ import annotations

import base64
import json
import re
import zlib
from urllib.parse import parse_qs

import pytest

from pipelines.evaluation.compare import METRICS, PRIMARY
from pipelines.tracking import views

PARENT = "a6505df20b0a4817976185db0cd01abf"


@pytest.fixture
def view():
    return views.grouped_chart_view("2", PARENT, created_at=1_700_000_000_000)


def test_the_tag_is_a_saved_view_envelope_with_a_deflated_state(view):
    key, value, _ = view
    assert key == f"mlflow.sharedViewState.arm-{PARENT}"
    envelope = json.loads(value)
    assert set(envelope) == {"name", "createdAt", "updatedAt", "state"}
    assert envelope["createdAt"] == envelope["updatedAt"] == 1_700_000_000_000
    assert "arm" in envelope["name"] and PARENT[:8] in envelope["name"]
    # what the UI inflates: "deflate;" + base64 of a zlib stream (pako's default format)
    assert envelope["state"].startswith("deflate;")
    raw = base64.b64decode(envelope["state"][len("deflate;"):])
    assert raw[0] == 0x78
    assert json.loads(zlib.decompress(raw)) == views.view_state(value)
    assert len(value) <= views.MAX_VALUE


def test_the_state_groups_the_children_of_the_parent_by_arm(view):
    state = views.view_state(view[1])
    assert state["groupBy"] == {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "arm"}]}
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{PARENT}'"
    assert state["useGroupedValuesInCharts"] is True
    # sorted by a metric, so the UI does not add the parent itself back as an "Additional runs" group
    assert state["orderByKey"] == f"metrics.`test/{PRIMARY}`" and state["orderByAsc"] is False


def test_the_charts_are_bars_of_the_test_metrics_primary_first(view):
    state = views.view_state(view[1])
    charts, sections = state["compareRunCharts"], state["compareRunSections"]
    assert [c["metricKey"] for c in charts] == [f"test/{m}" for m in METRICS]
    assert charts[0]["metricKey"] == "test/minority_recall"
    assert {c["type"] for c in charts} == {"BAR"}
    by_id = {s["uuid"]: s for s in sections}
    assert {by_id[c["metricSectionId"]]["name"] for c in charts} == {"test"}
    assert [s["name"] for s in sections] == ["test", "Model metrics", "System metrics"]
    assert by_id[charts[0]["metricSectionId"]]["isReordered"] and state["isAccordionReordered"]
    assert len({c["uuid"] for c in charts}) == len(charts)


def test_the_chart_search_keeps_the_listed_metrics_only(view):
    pattern = re.compile(views.view_state(view[1])["chartsSearchFilter"], re.IGNORECASE)
    assert all(pattern.search(f"test/{m}") for m in METRICS)
    for other in ("test/accuracy", "val/minority_recall", "arm/gan/minority_recall", "test/minority_recall_low"):
        assert not pattern.search(other)
    everything = views.grouped_chart_view("2", PARENT, only_listed=False, created_at=0)
    assert views.view_state(everything[1])["chartsSearchFilter"] == ""


def test_the_link_opens_the_shared_view_as_charts(view):
    key, _, link = view
    path, _, query = link.partition("?")
    assert path == "#/experiments/2/runs"
    params = parse_qs(query)
    assert params["viewStateShareKey"] == [key.removeprefix("mlflow.sharedViewState.")]
    assert params["compareRunsMode"] == ["CHART"]
    # a link naming a search facet is not read as a shared view by the UI
    assert not set(params) & {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter",
                              "modelVersionFilter", "datasetsFilter"}


def test_other_tags_metrics_and_an_uncompressed_state():
    key, value, link = views.grouped_chart_view("7", "abc", group_tag="gan kind", metrics=["val/g_mean", "loss"],
                                                aggregate="max", name="mine", compress=False, created_at=5)
    assert key == "mlflow.sharedViewState.gan_kind-abc" and "viewStateShareKey=gan_kind-abc" in link
    envelope = json.loads(value)
    assert envelope["name"] == "mine" and not envelope["state"].startswith("deflate;")
    state = json.loads(envelope["state"])
    assert state["groupBy"]["aggregateFunction"] == "max"
    assert state["groupBy"]["groupByKeys"][0]["groupByData"] == "gan kind"
    sections = {s["uuid"]: s["name"] for s in state["compareRunSections"]}
    assert [sections[c["metricSectionId"]] for c in state["compareRunCharts"]] == ["val", "Model metrics"]


def test_view_state_reads_a_bare_state_as_the_ui_does():
    state = {"groupBy": None}
    assert views.view_state(json.dumps(state)) == state
    packed = "deflate;" + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    assert views.view_state(packed) == state


def test_the_defaults_follow_the_compare_metrics():
    assert views.DEFAULT_METRICS == tuple(f"test/{m}" for m in [PRIMARY] + [m for m in METRICS if m != PRIMARY])


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="aggregate"):
        views.grouped_chart_view("1", PARENT, aggregate="median")
    with pytest.raises(ValueError, match="metric"):
        views.grouped_chart_view("1", PARENT, metrics=[])
    with pytest.raises(ValueError, match="20000"):
        views.grouped_chart_view("1", PARENT, metrics=[f"test/m{i}" for i in range(2000)], compress=False)
