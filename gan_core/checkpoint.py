"""Checkpoints that an interrupted training run resumes from, only for the same settings and data.

Checkpoints are device-free: saved from CPU copies (:func:`to_cpu`) and read with
``map_location="cpu"``; ``load_state_dict`` then copies the weights onto the modules' device (and
an optimiser's state onto its parameters' device), so a run checkpointed on a GPU resumes on a CPU."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """A digest of array contents: a checkpoint is only resumed for the data it was made on."""
    digest = hashlib.sha1()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def to_cpu(state):
    """``state`` (a tensor, or dicts, lists and tuples of them: a ``state_dict()``, an optimiser's
    included) with every tensor detached and on the CPU; other values as they are. On the CPU a
    tensor is returned as it is (no copy)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return type(state)((key, to_cpu(value)) for key, value in state.items())
    if isinstance(state, (list, tuple)):
        return type(state)(to_cpu(value) for value in state)
    return state


def resume(path: str | Path | None, config: dict, digest: str, modules: dict, rng: torch.Generator,
           total: int) -> tuple[int, list, float]:
    """Load a checkpoint made with the same ``config`` and data ``digest`` into ``modules`` (networks
    and optimisers by key) and ``rng``. Returns ``(step, history, seconds)``; zeros when there is none.

    The file is read with ``torch.load(weights_only=True)``: tensors, state dicts, the rng's ByteTensor
    and plain lists, dicts and numbers only. A checkpoint that needs more (a pickle that would build
    other objects, possibly code) or cannot be read is ignored with a warning and training starts
    again from step 0; the next checkpoint overwrites it."""
    if path is None or not Path(path).is_file():
        return 0, [], 0.0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("ignoring checkpoint %s: not plain tensors (possible code in a pickle); training starts again", path)
        return 0, [], 0.0
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        log.warning("ignoring checkpoint %s: unreadable (%s); training starts again", path, type(exc).__name__)
        return 0, [], 0.0
    if state["config"] != config or state["fingerprint"] != digest:
        log.warning("ignoring checkpoint %s: it was made with other settings or data", path)
        return 0, [], 0.0
    for key, module in modules.items():
        module.load_state_dict(state[key])
    rng.set_state(state["rng"])
    log.info("resuming from %s at step %d/%d", path, state["step"], total)
    return state["step"], state["history"], state["seconds"]


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (its tensors moved to the CPU) with torch.save via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(to_cpu(state), tmp)
    os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint
