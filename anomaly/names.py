"""The detector's score names, torch-free, so the command line lists them without loading torch.

They are read from the one place each score is declared, the keys of :data:`anomaly.scores.TABLE`,
by parsing ``scores.py`` as text (``ast``) instead of importing it: a new score is one entry there."""

from __future__ import annotations

import ast
from pathlib import Path


def _table_keys(source: Path) -> tuple[str, ...]:
    """The string keys of the dict literal assigned to ``TABLE`` in ``source``, in order."""
    for node in ast.parse(source.read_text(encoding="utf-8"), str(source)).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "TABLE" and isinstance(node.value, ast.Dict):
            return tuple(key.value for key in node.value.keys if isinstance(key, ast.Constant))
    raise ImportError(f"{source} assigns no dict literal to TABLE")


SCORES = _table_keys(Path(__file__).with_name("scores.py"))
DEFAULT_SCORE = "critic_feature_distance"
