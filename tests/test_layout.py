"""The import rules of the layout, read from the source with ``ast`` (imports inside functions count)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"pipelines", "gan_core", "gan_aug", "anomaly", "flows", "benchmarks"}
# package -> what its modules must never import (top-level names)
FORBIDDEN = {
    "gan_core": {"pipelines", "gan_aug", "anomaly", "flows", "benchmarks", "prefect", "prefect_dask", "mlflow"},
    "gan_aug": {"pipelines", "anomaly", "flows", "benchmarks", "prefect", "prefect_dask", "mlflow"},
    "anomaly": {"pipelines", "gan_aug", "flows", "benchmarks", "prefect", "prefect_dask", "mlflow"},
    "pipelines": {"gan_core", "gan_aug", "anomaly", "flows", "benchmarks", "prefect", "prefect_dask"},
    "flows": {"gan_core", "benchmarks", "mlflow"},
    "benchmarks": {"flows", "prefect", "prefect_dask", "mlflow"},
}
MLFLOW_HOME = ROOT / "pipelines" / "tracking"


def modules():
    return sorted(p for package in FORBIDDEN for p in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path):
    package = path.relative_to(ROOT).parts[0]
    wrong = imported(path) & FORBIDDEN[package]
    if "mlflow" in imported(path) and MLFLOW_HOME not in path.parents:
        wrong.add("mlflow")
    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize("package", ["gan_core", "gan_aug", "anomaly", "pipelines", "flows", "benchmarks",
                                     "pipelines.data", "pipelines.evaluation", "pipelines.tracking"])
def test_package_docstrings_name_what_must_not_be_imported(package):
    doc = importlib.import_module(package).__doc__ or ""
    top = package.split(".")[0]
    for name in FORBIDDEN[top] & PROJECT - {"benchmarks"}:
        assert f"``{name}``" in doc or f"`{name}`" in doc, f"{package} docstring does not name {name}"


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
