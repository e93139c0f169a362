"""FuserSpec, the one fused-image cache, the batch runner's method check and the one distributed context."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fusion.data.pairs import Pair
from fusion.errors import ConfigError, InputError
from fusion.fusers import Fuser, FuserSpec, build_fuser
from fusion.fusers.color import ColorFuser
from fusion.registry import Registry, declared_keywords
from fusion.runners.batch import SUMMARY_NAME, FuseOptions, fuse_pairs
from fusion.runners.cache import RECORD_NAME, CacheItem, FusedImageCache
from fusion.runners.dist import DistContext
from fusion.utils.io import read_image, write_image


def test_spec_parse_and_str():
    s = FuserSpec.parse("tcmoa_base:/ckpt/base.pth", {"tile": 448})
    assert (s.name, s.checkpoint, dict(s.options)) == ("tcmoa_base", "/ckpt/base.pth", {"tile": 448})
    assert str(s) == "tcmoa_base:/ckpt/base.pth"
    assert FuserSpec.parse(" gff ").name == "gff" and FuserSpec.parse("gff").checkpoint is None
    assert FuserSpec.parse(s) is s
    assert dict(FuserSpec.parse(s, {"x": 1}).options) == {"tile": 448, "x": 1}
    for bad in ("", ":ckpt", "tcmoa_base:"):
        with pytest.raises(ConfigError, match="fusion method"):
            FuserSpec.parse(bad)


def test_spec_slug_and_key(tmp_path):
    assert FuserSpec.parse("average").slug == "average"
    a, b = FuserSpec.parse("tcmoa_base:/x/ckpt.pth"), FuserSpec.parse("tcmoa_base:/y/ckpt.pth")
    assert a.slug.startswith("tcmoa_base-") and len(a.slug) == len("tcmoa_base-") + 8 and a.slug != b.slug
    assert FuserSpec.parse("laplacian", {"levels": 5}).slug != "laplacian"
    base = FuserSpec.parse("laplacian").cache_key()
    assert FuserSpec.parse("laplacian", {"levels": 5}).cache_key() != base
    assert FuserSpec.parse("laplacian", {"device": "cuda"}).cache_key() == base  # where it runs is not what it makes
    assert FuserSpec.parse("laplacian").cache_key(task="mef") != base
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"123")
    k1 = FuserSpec.parse(f"tcmoa_tiny:{ckpt}").cache_key()
    ckpt.write_bytes(b"1234")  # retrained weights: same path, new identity
    assert FuserSpec.parse(f"tcmoa_tiny:{ckpt}").cache_key() != k1
    assert FuserSpec.parse("tcmoa_tiny").weights_file is not None  # the shipped weights count when none is given


def test_spec_build_passes_runtime_options_only_where_declared():
    f = FuserSpec.parse("laplacian", {"levels": 3}).build(device="cpu", compat="official")
    assert f.settings()["levels"] == 3
    with pytest.raises(ConfigError, match="unknown setting"):
        FuserSpec.parse("laplacian", {"nope": 1}).build()
    assert isinstance(build_fuser("average", color="ycbcr", device="cpu"), ColorFuser)


def test_registry_and_declared_keywords():
    reg: Registry = Registry("widget")

    @reg.register("w")
    class W:
        def __init__(self, size: int = 2, *, device: str = "cpu") -> None:
            self.size = size

    assert "w" in reg and reg.names() == ["w"] and reg.get("w") is W
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register("w")(lambda: None)
    with pytest.raises(ConfigError, match=r"unknown widget 'x' \(known: w\)"):
        reg.get("x")
    assert declared_keywords(W) == {"size": 2, "device": "cpu"}
    assert declared_keywords(lambda **kw: None) is None


def _pairs(tmp_path: Path, n: int = 3) -> list[CacheItem]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        a, b = tmp_path / "src" / f"a{i}.png", tmp_path / "src" / f"b{i}.png"
        write_image(a, rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        write_image(b, rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        items.append(CacheItem(f"p{i}", (a, b)))
    return items


def _load(item: CacheItem) -> tuple[np.ndarray, np.ndarray]:
    return read_image(item.sources[0]), read_image(item.sources[1])


def test_cache_fuses_once_resumes_and_keys_settings(tmp_path):
    items = _pairs(tmp_path)
    cache = FusedImageCache(tmp_path / "cache", "maximum")
    out = cache.fill("test", items, _load, progress=False)
    assert sorted(out) == ["p0", "p1", "p2"] and all(p.parent == cache.folder / "test" for p in out.values())
    np.testing.assert_array_equal(read_image(out["p1"]), np.maximum(*_load(items[1])))
    record = json.loads((cache.folder / RECORD_NAME).read_text())
    assert record["spec"] == "maximum" and record["key"] == cache.key and record["task"] == "vif"
    stamps = {k: p.stat().st_mtime_ns for k, p in out.items()}
    out["p0"].unlink()  # an interrupted run: only the missing image is fused again
    assert cache.missing("test", items) == [items[0]]
    cache.fill("test", items, _load, progress=False)
    assert out["p0"].is_file() and all(out[k].stat().st_mtime_ns == stamps[k] for k in ("p1", "p2"))
    newer = stamps["p2"] + 5 * 10**9
    os.utime(items[2].sources[1], ns=(newer, newer))  # a source changed after its image was made
    assert cache.missing("test", items) == [items[2]]
    other = FusedImageCache(tmp_path / "cache", "maximum", task="mef")
    assert other.folder != cache.folder  # another key, another folder; nothing is deleted
    assert FusedImageCache(tmp_path / "cache", FuserSpec.parse("laplacian", {"levels": 2})).folder.name.startswith(
        "laplacian-")
    with pytest.raises(ConfigError, match="format"):
        FusedImageCache(tmp_path / "cache", "maximum", fmt="bmp")


class _Broken(Fuser):
    name = "broken"

    def fuse(self, a: np.ndarray, b: np.ndarray, task: str = "vif") -> np.ndarray:
        return a[:, :, 0]


def test_cache_refuses_bad_outputs_and_unequal_sources(tmp_path):
    items = _pairs(tmp_path, 1)
    cache = FusedImageCache(tmp_path / "cache", "maximum")
    with pytest.raises(InputError, match=r"broken returned \(\(20, 24\)"):
        cache.fill("test", items, _load, fuser=_Broken(), progress=False)
    assert not cache.path("test", "p0").exists()
    small = tmp_path / "src" / "small.png"
    write_image(small, np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(InputError, match="differs from"):
        cache.fill("test", [CacheItem("x", (items[0].sources[0], small))], _load, progress=False)


def test_skip_existing_refuses_outputs_of_another_method(tmp_path):
    items = _pairs(tmp_path, 2)
    pairs = [Pair(name=it.ident, a=it.sources[0], b=it.sources[1], task="vif") for it in items]
    out = tmp_path / "out"
    first = FuserSpec.parse("maximum")
    summary = fuse_pairs(pairs, first.build(), FuseOptions(out_dir=out, progress=False), spec=first)
    assert summary["cache_key"] == first.cache_key(compat="default")
    assert json.loads((out / SUMMARY_NAME).read_text())["spec"]["spec"] == "maximum"
    again = fuse_pairs(pairs, first.build(), FuseOptions(out_dir=out, skip_existing=True, progress=False), spec=first)
    assert again["written"] == 0 and again["skipped_existing"] == 2
    other = FuserSpec.parse("average")
    with pytest.raises(InputError, match="made by another method"):
        fuse_pairs(pairs, other.build(), FuseOptions(out_dir=out, skip_existing=True, progress=False), spec=other)


def test_dist_context(monkeypatch):
    assert DistContext(rank=1, world_size=3).shard(list(range(8))) == [1, 4, 7]
    one = DistContext()
    assert not one.distributed and one.is_main and one.gather(5) == [5] and one.all_true(True)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK=2 WORLD_SIZE=2"):
        DistContext.from_env()
    assert str(DistContext().with_device("cpu").device) == "cpu"
