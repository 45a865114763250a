from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from pipelines.data.batches import batch_digest, check_batch, count_items, iter_batch, read_batch
from pipelines.errors import GanpipeError
from benchmarks.bad_batches import GREY, KINDS, NON_UTF8, ODD_NAMES, SHAPE, grey, mismatch, read_kind


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_bad_input_matrix(kind, tmp_path):
    outcome = read_kind(kind, tmp_path / "read", chunk_size=2)
    assert mismatch(kind, outcome) == ""
    (tmp_path / "check").mkdir()
    if kind.error and kind.late:
        check_batch(kind.build(tmp_path / "check"))
    elif kind.error:
        with pytest.raises(GanpipeError) as refused:
            check_batch(kind.build(tmp_path / "check"))
        assert kind.error in str(refused.value) and "\n" not in str(refused.value)
    else:
        assert len(outcome.items) == outcome.counted == len(kind.items)
        assert len({i for i, reason in outcome.items if reason is None}) == sum(r is None for _, r in outcome.items)


def test_the_matrix_covers_at_least_25_kinds():
    assert len(KINDS) >= 25 and len({k.name for k in KINDS}) == len(KINDS)


def _folder(root):
    rng = np.random.default_rng(0)
    for i in range(7):
        grey(root / f"img{i}.png", rng.integers(0, 256, (28, 28), np.uint8))
    grey(root / "sub" / "big.png", np.kron(GREY, np.ones((2, 2), np.uint8)))
    (root / "notes.txt").write_text("not an image")
    (root / "cut.png").write_bytes((root / "img0.png").read_bytes()[:300])
    grey(root / "colour.png", np.stack([GREY, GREY // 3, GREY], -1))
    (root / "out.png").symlink_to(grey(root.parent / "outside" / "x.png"))
    return root


def _csv(root):
    _folder(root / "images")
    rows = [{"path": f"images/img{i}.png", "id": f"id {i % 5}, \"q\""} for i in range(7)]
    rows += [{"path": "images/notes.txt", "id": "n"}, {"path": "../outside/x.png", "id": "o"},
             {"path": "images/gone.png", "id": "g"}, {"path": "images/sub/big.png", "id": ""}]
    pd.DataFrame(rows).to_csv(root / "list.csv", index=False)
    return root / "list.csv"


def _npz(root, compressed=False, dtype=np.float32):
    x = np.random.default_rng(1).random((13, 28, 28)).astype(np.float32)
    x[2, 0, 0], x[5, 1, 1], x[9, 3, 3] = np.nan, 1.5, -np.inf
    if dtype == np.uint16:
        x = np.nan_to_num(np.clip(x, 0, 1) * 65535).astype(np.uint16)
    ids = np.array(["a", "b", "c", "d", "a", "e", "f", "g", "b", "h", "i", "j", "k"])
    root.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(root / "b.npz", x=x[:, None], ids=ids)
    return root / "b.npz"


BATCHES = {
    "folder": _folder,
    "csv": _csv,
    "npz": _npz,
    "npz compressed": lambda root: _npz(root, compressed=True),
    "npz uint16 compressed": lambda root: _npz(root, compressed=True, dtype=np.uint16),
}


def _items(path, chunk_size=1, skip=0):
    """Every item from ``skip`` on as ``(id, reason, image)``, and the chunk ends."""
    items, ends = [], []
    for chunk in iter_batch(path, SHAPE, chunk_size=chunk_size, skip=skip):
        assert len(chunk.ids) + len(chunk.rejected) == chunk.end - (ends[-1] if ends else skip) <= chunk_size
        assert chunk.x.shape == (len(chunk.ids), *SHAPE) and chunk.x.dtype == np.float32
        ends.append(chunk.end)
        items.append((chunk.ids, chunk.x, chunk.rejected))
    return items, ends


def _joined(items):
    ids = tuple(i for chunk_ids, _, _ in items for i in chunk_ids)
    x = np.concatenate([x for _, x, _ in items]) if items else np.zeros((0, *SHAPE), np.float32)
    return ids, x, tuple(r for _, _, rejected in items for r in rejected)


@pytest.mark.parametrize("kind", BATCHES)
def test_chunks_give_the_same_items_as_one_read(kind, tmp_path):
    path = BATCHES[kind](tmp_path / "batch")
    n = count_items(path)
    whole, ends = _items(path, chunk_size=4096)
    assert ends == [n]
    ids, x, rejected = _joined(whole)
    assert len(ids) + len(rejected) == n and len(set(ids)) == len(ids) and len(ids) >= 5 and len(rejected) >= 2
    for chunk_size in (1, 3, 5):
        chunks, ends = _items(path, chunk_size=chunk_size)
        assert ends == list(range(chunk_size, n, chunk_size)) + [n]
        chunk_ids, chunk_x, chunk_rejected = _joined(chunks)
        assert chunk_ids == ids and chunk_rejected == rejected
        np.testing.assert_array_equal(chunk_x, x)
    batch = read_batch(path, SHAPE)
    assert (batch.ids, batch.rejected) == (ids, rejected)
    np.testing.assert_array_equal(batch.x, x)


@pytest.mark.parametrize("kind", BATCHES)
def test_skip_resumes_exactly_where_a_run_stopped(kind, tmp_path):
    path = BATCHES[kind](tmp_path / "batch")
    n = count_items(path)
    one_by_one, _ = _items(path, chunk_size=1)
    assert len(one_by_one) == n
    for skip in (1, 4, 5, n - 1, n, n + 3):
        resumed, ends = _items(path, chunk_size=3, skip=skip)
        assert ends == list(range(min(skip, n) + 3, n, 3)) + [n] if skip < n else ends == []
        ids, x, rejected = _joined(resumed)
        want_ids, want_x, want_rejected = _joined(one_by_one[skip:])
        assert (ids, rejected) == (want_ids, want_rejected)
        np.testing.assert_array_equal(x, want_x)


def test_a_repeated_id_is_rejected_even_when_its_first_occurrence_was_skipped(tmp_path):
    path = _npz(tmp_path)
    rejected = _joined(_items(path, chunk_size=2, skip=6)[0])[2]
    assert ("b", "duplicate id") in rejected  # item 8 repeats item 1


def test_iter_batch_memory_stays_bounded_on_a_large_npz(tmp_path):
    n = 200_000
    x = np.random.default_rng(0).integers(0, 256, (n, 28, 28), np.uint8)
    np.savez(tmp_path / "big.npz", x=x, ids=np.char.add("item-", np.arange(n).astype(str)))
    size = x.nbytes
    del x
    tracemalloc.start()
    try:
        items, last = 0, 0
        for chunk in iter_batch(tmp_path / "big.npz", SHAPE, chunk_size=1024):
            items += len(chunk.ids) + len(chunk.rejected)
            last = chunk.end
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert items == last == n
    assert peak < 0.2 * size, f"peak {peak / 2**20:.0f} MB for a {size / 2**20:.0f} MB array"


def test_ids_survive_a_pandas_csv_round_trip(tmp_path):
    for name in (*ODD_NAMES, NON_UTF8):
        grey(tmp_path / "batch" / name)
    odd_ids = ["a,b", 'say "hi"', "two\nlines\r\nthree", "ünï 名", " pad ", "tab\there"]
    pd.DataFrame({"path": [ODD_NAMES[0]] * len(odd_ids), "id": odd_ids}).to_csv(tmp_path / "batch" / "list.csv",
                                                                                index=False)
    folder_ids = read_batch(tmp_path / "batch", SHAPE).ids
    csv_ids = read_batch(tmp_path / "batch" / "list.csv", SHAPE).ids
    assert set(folder_ids) >= set(ODD_NAMES) | {"bad\\xff.png"} and list(csv_ids) == odd_ids
    for ids in (folder_ids, csv_ids):
        pd.DataFrame({"item_id": ids, "score": 0.5}).to_csv(tmp_path / "scores.csv", index=False)
        assert pd.read_csv(tmp_path / "scores.csv")["item_id"].tolist() == list(ids)


def test_batch_digest_follows_content_not_links(tmp_path):
    batch = _folder(tmp_path / "batch")
    first = batch_digest(batch)
    assert batch_digest(batch) == first and read_batch(batch, SHAPE).batch_id == first
    grey(tmp_path / "outside" / "x.png", GREY)  # the target of out.png changes: not part of the batch
    assert batch_digest(batch) == first
    grey(batch / "img0.png", GREY)
    assert batch_digest(batch) != first


@pytest.mark.parametrize("chunk_size, skip", [(0, 0), (4, -1)])
def test_iter_batch_rejects_bad_arguments(chunk_size, skip, tmp_path):
    with pytest.raises(ValueError):
        next(iter_batch(_npz(tmp_path), SHAPE, chunk_size=chunk_size, skip=skip))
