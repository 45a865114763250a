"""The bench runner's sections: each says what produced it, on what, and replaces only itself."""

from __future__ import annotations

import torch

from benchmarks.run import _section, update_doc


def test_a_section_is_stamped_with_its_command_commit_and_the_cpu_kernels_torch_used():
    block = _section("regimes-digits", "numbers", quick=False)
    assert block.startswith("<!-- bench:regimes-digits -->\nnumbers\n") and block.endswith("<!-- /bench:regimes-digits -->")
    assert "`python -m benchmarks.run --only regimes-digits` at commit " in block
    assert f"{torch.backends.cpu.get_cpu_capability()} kernels" in block and "Quick mode" not in block
    assert "**Quick mode**" in _section("regimes-digits", "numbers", quick=True)


def test_updating_the_doc_replaces_a_section_in_place_and_appends_a_new_one(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# B\n\n<!-- bench:a -->\nold\n<!-- /bench:a -->\n\ntail\n")
    text = update_doc(doc, {"a": "<!-- bench:a -->\nnew\n<!-- /bench:a -->", "b": "<!-- bench:b -->\nb\n<!-- /bench:b -->"})
    assert "old" not in text and text.index("new") < text.index("tail") < text.index("<!-- bench:b -->")
