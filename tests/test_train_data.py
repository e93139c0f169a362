"""fusion.training.data: pair collection with held-back pairs, paired crops, per-task streams, DDP split, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.errors import DatasetError
from fusion.training.data import PairCropDataset, TaskStream, collect_pairs, sample_crop_params
from fusion.utils.io import write_image


@pytest.fixture(scope="module")
def vif_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vif")
    rng = np.random.default_rng(0)
    for i in range(7):
        img = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
        write_image(root / "vi" / f"{i:02d}.png", img)
        write_image(root / "ir" / f"{i:02d}.png", img)  # b == a: both crops must then be equal
    return root


def test_collect_pairs_exclude_include_repeat(vif_root):
    pairs = collect_pairs("vif", [str(vif_root)])
    assert [p.name for p in pairs] == [f"{i:02d}" for i in range(7)]
    kept = collect_pairs("vif", [{"root": str(vif_root), "exclude": ["00", "03"]}])
    assert [p.name for p in kept] == ["01", "02", "04", "05", "06"]
    only = collect_pairs("vif", [{"root": str(vif_root), "include": ["01"], "repeat": 3}])
    assert [p.name for p in only] == ["01", "01", "01"] and all(p.task == "vif" for p in only)
    with pytest.raises(DatasetError, match="do not exist: 99"):
        collect_pairs("vif", [{"root": str(vif_root), "exclude": ["99"]}])
    with pytest.raises(DatasetError, match="no vif training pairs left"):
        collect_pairs("vif", [{"root": str(vif_root), "include": ["01"], "exclude": ["01"]}])


def test_crop_params_stay_inside_and_respect_scale():
    rng = np.random.default_rng(1)
    for _ in range(200):
        top, left, h, w = sample_crop_params(rng, 100, 150, (0.1, 0.5), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 150
        assert 0.1 * 15000 * 0.9 <= h * w <= 0.5 * 15000 * 1.1
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_dataset_is_deterministic_and_pairs_share_geometry(vif_root):
    ds = PairCropDataset(collect_pairs("vif", [str(vif_root)]), "vif", crop_size=112, scale=(0.2, 0.6), seed=3)
    x = ds[(2, 5)]
    assert x["a"].shape == (3, 112, 112) and x["a"].dtype == torch.float32
    assert 0.0 <= float(x["a"].min()) and float(x["a"].max()) <= 1.0
    assert torch.equal(x["a"], x["b"])  # identical sources -> identical crops (same box, same flip)
    assert torch.equal(ds[(2, 5)]["a"], x["a"])  # a pure function of (seed, task, epoch, index)
    assert not torch.equal(ds[(2, 6)]["a"], x["a"])  # another epoch, another crop
    other = PairCropDataset(ds.pairs, "mff", crop_size=112, scale=(0.2, 0.6), seed=3)
    assert not torch.equal(other[(2, 5)]["a"], x["a"])  # the task is part of the seed


def _indices(stream: TaskStream, n: int) -> list[list[int]]:
    return [stream.next()["index"].tolist() for _ in range(n)]


def test_stream_epochs_and_ddp_split(vif_root):
    ds = PairCropDataset(collect_pairs("vif", [str(vif_root)]), "vif", crop_size=112)
    single = TaskStream(ds, batch_size=2, world_size=1, rank=0, seed=4)
    assert single.batches_per_epoch == 3  # 7 pairs, incomplete batches dropped
    seen = _indices(single, 3)
    assert len({i for b in seen for i in b}) == 6 and single.epoch == 0
    single.next()
    assert single.epoch == 1 and single.position == 1
    # two processes with batch 1: the union of their i-th batches is the single process's i-th batch
    one = TaskStream(ds, batch_size=2, world_size=1, rank=0, seed=4)
    r0 = TaskStream(ds, batch_size=1, world_size=2, rank=0, seed=4)
    r1 = TaskStream(ds, batch_size=1, world_size=2, rank=1, seed=4)
    assert r0.batches_per_epoch == one.batches_per_epoch == 3
    for _ in range(5):  # crosses an epoch boundary
        b = one.next()
        x0, x1 = r0.next(), r1.next()
        assert sorted(b["index"].tolist()) == sorted(x0["index"].tolist() + x1["index"].tolist())
        got = {int(i): a for i, a in zip(b["index"], b["a"])}
        assert torch.equal(got[int(x0["index"][0])], x0["a"][0])  # same crops whatever the split


def test_stream_resume_replays_exactly(vif_root):
    ds = PairCropDataset(collect_pairs("vif", [str(vif_root)]), "vif", crop_size=112)
    ref = TaskStream(ds, batch_size=2, seed=5)
    first = [ref.next() for _ in range(4)]
    state = None
    s = TaskStream(ds, batch_size=2, seed=5)
    for _ in range(2):
        s.next()
    state = s.state_dict()
    resumed = TaskStream(ds, batch_size=2, seed=5)
    resumed.load_state_dict(state)
    for want in first[2:]:
        got = resumed.next()
        assert torch.equal(got["a"], want["a"]) and got["index"].tolist() == want["index"].tolist()
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    TaskStream(ds, batch_size=2, seed=5).next()
    assert torch.equal(torch.rand(3), before)  # streams never touch the global torch RNG


def test_stream_needs_one_global_batch(vif_root):
    ds = PairCropDataset(collect_pairs("vif", [{"root": str(vif_root), "include": ["00", "01"]}]), "vif")
    with pytest.raises(DatasetError, match="fewer than one global batch"):
        TaskStream(ds, batch_size=2, world_size=2)
