from __future__ import annotations

import re
import subprocess
import sys

import pytest

from flows.cli import main
from flows.params import (
    AugmentParams,
    ClusterParams,
    CompareParams,
    DemoParams,
    MlflowServerParams,
    ScoreParams,
    ServeParams,
    TrainDetectorParams,
)

COMMANDS = {"demo": [DemoParams], "augment": [AugmentParams], "compare": [CompareParams, ClusterParams],
            "train-detector": [TrainDetectorParams], "score": [ScoreParams], "serve": [ServeParams],
            "mlflow-server": [MlflowServerParams]}


def help_text(argv, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")  # one option per line: defaults are not wrapped
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_each_default_once(command, capsys, monkeypatch):
    text = help_text([command, "--help"], capsys, monkeypatch)
    assert text.startswith(f"Usage: ganpipe {command}")
    assert "(default" not in text and "[default: None]" not in text
    for model in COMMANDS[command]:
        for name, field in model.model_fields.items():
            option = "--" + name.replace("_", "-")
            if field.annotation is dict or str(field.annotation).startswith("dict"):
                assert not re.search(rf"{option}(?![\w-])", text)  # dict settings are for Python callers and deployments
                continue
            line = next(line for line in text.splitlines() if option in line.lstrip("│ *").split()[:2])
            shown = [] if field.default is None or field.is_required() else [f"[default: {field.default}]"]
            assert re.findall(r"\[default: [^\]]*\]", line) == shown, line


def test_top_level_help_lists_commands_and_bare_ganpipe_shows_it(capsys, monkeypatch):
    text = help_text(["--help"], capsys, monkeypatch)
    for command in COMMANDS:
        assert command in text
    assert help_text([], capsys, monkeypatch) == text


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ganpipe {version('ganpipe')}"


def test_doctor_names_the_device_auto_picks_and_why(capsys, monkeypatch, tmp_path):
    import torch

    from pipelines.devices import device_name, pick_device

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    device, why = pick_device("auto")
    assert f"torch {torch.__version__}" in lines[0]
    assert f"device: {device_name(device)} (--device auto: {why})" in lines
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert "device: cpu (--device auto: no CUDA GPU and no Apple MPS)" in lines
    assert f"MLflow tracking: sqlite:///{tmp_path}/mlflow.db" in lines
    assert main(["doctor", "--device", "cpu"]) == 0
    assert "device: cpu (--device cpu: asked for)" in capsys.readouterr().out.splitlines()


def test_doctor_says_in_one_line_when_the_device_asked_for_is_not_there(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert main(["doctor", "--device", "cuda:0"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda:0: no CUDA GPU is available" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["augment", "--data", "imagenet", "--minority", "2"], "unknown data source 'imagenet'"),
        (["augment", "--data", "folder:/no/such/dir", "--minority", "2"], "data folder not found: /no/such/dir"),
        (["compare", "--data", "digits", "--minority", "2:10,eleven:3"], "unknown class 'eleven'"),
        (["compare", "--data", "digits", "--minority", "2:1000"], "cannot keep 1000"),
        (["compare", "--data", "digits", "--minority", "2=10"], "bad class count '2=10'"),
        (["compare", "--data", "digits", "--seeds", "many"], 'unable to convert "many" into int'),
        (["compare", "--dask-address", "tcp://h:1", "--dask-workers", "2"], "not both"),
        (["augment", "--no-such-option", "1"], "--no-such-option"),
        (["score"], "score needs BATCH and --out"),
        (["no-such-command"], 'Unknown command "no-such-command"'),
    ],
)
def test_user_errors_print_one_line_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ganpipe: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_image_in_folder_is_one_line_from_a_real_process(image_folder):
    (image_folder / "nut" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "augment", "--data", f"folder:{image_folder}", "--minority", "bolt:2"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(f"ganpipe: error: {image_folder}/nut/bad.png: unreadable image (not a known "
                                        "image format)")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("spec, label", [("mnist5k", "mnist5k"), ("folder:/data/nuts/", "nuts"),
                                         ("folder:scans", "scans"), ("csv:/x/labels.csv", "labels.csv")])
def test_runs_are_named_after_their_data(spec, label):
    from flows.common import data_label

    assert data_label(spec) == label


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["augment", "--help"], ["augmnt"], ["compare", "--seeds", "1"]])
def test_start_up_answers_without_loading_torch_or_prefect(argv):
    """--help, --version, a typo and an option error come from the parameter models alone."""
    code = ("import sys; from flows.cli import main; status = main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('torch', 'prefect', 'mlflow', 'sklearn', 'albumentations') if m in sys.modules); "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in done.stderr, done.stderr


def test_mlflow_server_listens_where_host_says_and_prints_the_url_to_use(capsys, monkeypatch, tmp_path):
    import socket

    import flows.servers as servers

    started = []
    monkeypatch.setattr(servers, "run_mlflow_server", lambda port, store, artifacts, host: started.append((host, port)) or 0)
    assert main(["mlflow-server", "--host", "0.0.0.0", "--port", "5123"]) == 0
    assert started == [("0.0.0.0", 5123)]
    url = f"http://{socket.gethostname()}:5123"  # all interfaces: clients use this machine's name
    assert capsys.readouterr().out == (f"MLflow server on {url}; point flows at it with\n"
                                       f"  export MLFLOW_TRACKING_URI={url}\n")
    assert main(["mlflow-server"]) == 0 and started[-1] == ("127.0.0.1", 5000)  # loopback by default
    assert "MLflow server on http://127.0.0.1:5000;" in capsys.readouterr().out
    command = servers.mlflow_server_command(5123, f"sqlite:///{tmp_path}/m.db", tmp_path, host="10.0.0.7")
    assert command[command.index("--host") + 1] == "10.0.0.7"
    assert servers.server_url("::1", 5000) == "http://[::1]:5000"
    assert "no authentication" in " ".join(help_text(["mlflow-server", "--help"], capsys, monkeypatch).split())
