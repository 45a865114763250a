from __future__ import annotations

import subprocess
import sys

import pytest

from flows.cli import build_parser, main


@pytest.mark.parametrize("command", ["demo", "augment", "compare", "train-detector", "score", "serve", "mlflow-server"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: ganpipe " + command in capsys.readouterr().out


def test_top_level_help_lists_commands():
    text = build_parser().format_help()
    for command in ("demo", "augment", "compare", "train-detector", "score", "serve", "mlflow-server"):
        assert command in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["augment", "--data", "imagenet", "--minority", "2"], "unknown data source 'imagenet'"),
        (["augment", "--data", "folder:/no/such/dir", "--minority", "2"], "data folder not found: /no/such/dir"),
        (["compare", "--data", "digits", "--minority", "2:10,eleven:3"], "unknown class 'eleven'"),
        (["compare", "--data", "digits", "--minority", "2:1000"], "cannot keep 1000"),
        (["compare", "--data", "digits", "--minority", "2=10"], "bad class count '2=10'"),
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
    assert proc.stderr.strip().endswith("nut/bad.png: unreadable image (cannot identify image file "
                                        f"'{image_folder}/nut/bad.png')")
    assert "Traceback" not in proc.stderr
