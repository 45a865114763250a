"""Fitted state on disk in a form that cannot run code when it is read back.

``save_state(state, folder)`` splits nested dicts, lists and tuples of tensors, numpy arrays and JSON
values into ``tensors.pt`` (a flat ``{key: tensor}`` dict, read with ``torch.load(weights_only=True)``,
which only rebuilds plain tensors) and ``state.json`` (everything else, with ``{"$tensor": key}`` where
a tensor was). Numpy arrays come back as numpy arrays of their dtype, tensors as tensors, tuples as
tuples, non-finite floats, dicts with non-string keys and module state dicts (with their
``_metadata``) as they were; numpy scalars come back as Python numbers. Any other object is refused
when saving, and a file that decodes to one is refused when loading.
"""

from __future__ import annotations

import json
import math
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.errors import GanpipeError

TENSORS_FILE = "tensors.pt"
STATE_FILE = "state.json"
FORMAT = 1


def save_state(state: dict, folder: str | Path) -> Path:
    """Write ``state`` as ``folder/tensors.pt`` and ``folder/state.json``; returns ``folder``.
    Objects other than tensors, numeric or string numpy arrays and JSON values -> TypeError."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, "state", tensors)
    torch.save(tensors, folder / TENSORS_FILE)
    (folder / STATE_FILE).write_text(json.dumps({"format": FORMAT, "state": encoded}, indent=1))
    return folder


def load_state(folder: str | Path) -> dict:
    """The state :func:`save_state` wrote to ``folder``. A tensors file that holds anything but plain
    tensors (a pickle that would build other objects), or a state file that is not that JSON ->
    :class:`~pipelines.errors.GanpipeError` naming the file."""
    folder = Path(folder)
    tensors = load_plain_tensors(folder / TENSORS_FILE)
    path = folder / STATE_FILE
    try:
        document = json.loads(path.read_text())
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT}")
        return _decode(document["state"], tensors)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GanpipeError(f"refusing to load {path}: not a ganpipe state file ({exc})") from None


def load_plain_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``{key: tensor}`` file read with ``torch.load(weights_only=True)``; anything else -> GanpipeError."""
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GanpipeError(f"refusing to load {path}: not plain tensors (possible code in a pickle)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise GanpipeError(f"refusing to load {path}: not a tensors file ({exc})") from None
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in tensors.items()):
        raise GanpipeError(f"refusing to load {path}: not a flat dict of tensors")
    return tensors


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for ``value``; tensors (and numeric arrays, as tensors) go to ``tensors`` under ``key``-based names."""
    if isinstance(value, torch.Tensor):
        return {"$tensor": _put(tensors, key, value.detach().cpu())}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            array = np.ascontiguousarray(value)
            return {"$ndarray": _put(tensors, key, torch.from_numpy(array)), "dtype": array.dtype.str}
        if value.dtype.kind == "U":
            return {"$strings": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
        raise TypeError(f"{key}: numpy arrays of dtype {value.dtype} cannot be saved as plain data")
    if isinstance(value, np.generic):
        return _encode(value.item(), key, tensors)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:  # a module's state dict: load_state_dict reads the versions in it
            return {"$module_state": _encode(dict(value), key, tensors),
                    "metadata": _encode(dict(metadata), f"{key}/_metadata", tensors)}
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, f"{key}/{k}", tensors) for k, v in value.items()}
        return {"$items": [[_encode(k, f"{key}/{i}k", tensors), _encode(v, f"{key}/{i}", tensors)]
                           for i, (k, v) in enumerate(value.items())]}
    raise TypeError(f"{key}: {type(value).__name__} cannot be saved as plain data")


def _put(tensors: dict[str, torch.Tensor], key: str, tensor: torch.Tensor) -> str:
    if key in tensors:
        raise ValueError(f"two tensors would be stored as {key!r}")
    tensors[key] = tensor
    return key


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$ndarray" in value:
        return tensors[value["$ndarray"]].numpy().astype(_dtype(value["dtype"], "biufc"), copy=False)
    if "$strings" in value:
        return np.array(value["$strings"], dtype=_dtype(value["dtype"], "U")).reshape(value["shape"])
    if "$float" in value:
        return float(value["$float"])
    if "$tuple" in value:
        return tuple(_decode(v, tensors) for v in value["$tuple"])
    if "$items" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["$items"]}
    if "$module_state" in value:
        state = OrderedDict(_decode(value["$module_state"], tensors))
        state._metadata = OrderedDict(_decode(value["metadata"], tensors))  # type: ignore[attr-defined]
        return state
    return {k: _decode(v, tensors) for k, v in value.items()}


def _dtype(name: str, kinds: str) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind not in kinds:
        raise ValueError(f"unexpected array dtype {name!r}")
    return dtype
