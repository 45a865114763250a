"""The import rules of the layout, read from the source with ``ast`` (imports inside functions count)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"pipelines", "gan_core", "gan_aug", "anomaly", "flows", "benchmarks"}
SERVICES = {"prefect", "prefect_dask", "mlflow"}
GAN_CORE = "gan_core"
# area -> what its modules must never import (module names and their sub-modules)
FORBIDDEN = {
    GAN_CORE: {"pipelines.data", "pipelines.evaluation", "pipelines.tracking", "gan_aug", "anomaly", "flows",
               "benchmarks"} | SERVICES,
    "gan_aug": {"pipelines.data", "pipelines.evaluation", "pipelines.tracking", "anomaly", "flows", "benchmarks"}
    | SERVICES,
    "anomaly": {"pipelines.data", "pipelines.evaluation", "pipelines.tracking", "gan_aug", "flows", "benchmarks"}
    | SERVICES,
    "pipelines": {"gan_aug", "anomaly", "flows", "benchmarks", "prefect", "prefect_dask"},
    # tracking logs what evaluation computes: the arrow goes one way
    "pipelines.evaluation": {"pipelines.tracking"},
    "pipelines.data": {"pipelines.evaluation", "pipelines.tracking"},
    "flows": {GAN_CORE, "benchmarks", "mlflow"},
    "benchmarks": {"flows"} | SERVICES,
}
MLFLOW_HOME = ROOT / "pipelines" / "tracking"


def areas(path: Path) -> list[str]:
    """The areas ``path`` belongs to, outermost first: ``pipelines/evaluation/compare.py`` is in
    ``pipelines`` and in ``pipelines.evaluation``; the rules of each apply."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return [name for name in FORBIDDEN if module == name or module.startswith(name + ".")]


def violations(path: Path) -> set[str]:
    names = imported(path)
    wrong = {name for name in names for rules in areas(path) if breaks(name, FORBIDDEN[rules])}
    if any(breaks(name, {"mlflow"}) for name in names) and MLFLOW_HOME not in path.parents:
        wrong.add("mlflow")
    return wrong


def modules():
    return sorted(p for package in PROJECT for p in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Full names of the modules ``path`` imports (``from a.b import c`` gives ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def breaks(name: str, rules: set[str]) -> bool:
    return any(name == rule or name.startswith(rule + ".") for rule in rules)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path):
    assert areas(path), f"{path.relative_to(ROOT)} is in no area of the layout"
    wrong = violations(path)
    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_a_planted_back_import_from_evaluation_to_tracking_fails(tmp_path, monkeypatch):
    """Evaluation computes, tracking logs: a module of ``pipelines/evaluation`` that imports tracking
    (even inside a function) breaks the rule, while tracking importing evaluation does not."""
    root = tmp_path / "project"
    for folder, text in {"pipelines/evaluation": "def f():\n    from pipelines.tracking.runs import start_run\n",
                         "pipelines/tracking": "from pipelines.evaluation.compare import METRICS\n"}.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "planted.py").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", root)
    monkeypatch.setattr(sys.modules[__name__], "MLFLOW_HOME", root / "pipelines" / "tracking")
    assert violations(root / "pipelines/evaluation/planted.py") == {"pipelines.tracking.runs"}
    assert violations(root / "pipelines/tracking/planted.py") == set()


def test_rules_catch_a_forbidden_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from pipelines.data.splits import stratified_split\nimport mlflow.pyfunc\n")
    assert breaks("pipelines.data.splits", FORBIDDEN["gan_aug"]) and not breaks("gan_core.config", FORBIDDEN["gan_aug"])
    assert imported(module) == {"pipelines.data.splits", "mlflow.pyfunc"}


@pytest.mark.parametrize("package", [GAN_CORE, "gan_aug", "anomaly", "pipelines", "flows", "benchmarks",
                                     "pipelines.data", "pipelines.evaluation", "pipelines.tracking"])
def test_package_docstrings_name_what_must_not_be_imported(package):
    doc = importlib.import_module(package).__doc__ or ""
    rules = FORBIDDEN[package.split(".")[0]]
    for name in {r for r in rules if r in PROJECT or r == GAN_CORE} - {"benchmarks"}:
        short = name.rsplit(".", 1)[-1]
        assert any(f"`{n}`" in doc for n in (name, short)), f"{package} docstring does not name {name}"


def test_public_entries():
    from anomaly import GANAnomalyDetector
    from gan_aug import GANOverSampler
    from sklearn.base import BaseEstimator

    assert issubclass(GANOverSampler, BaseEstimator) and issubclass(GANAnomalyDetector, BaseEstimator)


def test_deployments_in_prefect_yaml_are_valid_parameter_models():
    import yaml

    from flows import params

    models = {"score_inbox_flow": params.ScoreInboxParams, "augment_flow": params.AugmentParams,
              "compare_flow": params.CompareParams}
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        assert hasattr(importlib.import_module(module), name)
        models[name](**deployment.get("parameters", {}).get("params", {}))


def test_the_estimators_the_registry_names_by_string_are_the_public_entries():
    """Tracking may not import either GAN family, so the registry names their estimator classes as
    strings: an arrow the import rules cannot see. Each string must name a public entry that stores
    and restores itself as plain state."""
    from anomaly import GANAnomalyDetector
    from gan_aug import GANOverSampler
    from pipelines.tracking.registry import ESTIMATORS

    named = set()
    for dotted in ESTIMATORS:
        module, _, name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert callable(cls.from_state_dict) and callable(cls.state_dict), dotted
        named.add(cls)
    assert named == {GANAnomalyDetector, GANOverSampler}
