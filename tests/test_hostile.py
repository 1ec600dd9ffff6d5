"""Hostile files (tests/hostile_corpus.py) are refused, naming the file, in < 1 s and < 200 MB
of extra peak memory, each loaded in a fresh process; honest files written the same way load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hostile_corpus import CORPUS, measure, write_torch_zip

from emoca.io.safe_pickle import UnsafePickleError, load_pickle, load_torch


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_file_is_refused_quickly_in_little_memory(tmp_path, case):
    path = tmp_path / case.name
    case.build(path)
    result = measure(case.loader, path)
    assert result["outcome"] == "UnsafePickleError", result
    assert str(path) in result["message"] and case.expect in result["message"], result
    assert result["seconds"] < 1.0, result
    assert result["peak_mb"] < 200, result


def test_hand_written_torch_zip_is_what_torch_writes(tmp_path):
    # the writer the hostile archives come from, unmodified, is a valid torch file
    sd = {"a": torch.randn(3, 4), "b": {"c": torch.arange(5)}}
    sd["view"] = sd["a"][1:, ::2]
    path = tmp_path / "honest.ckpt"
    write_torch_zip(path, sd)
    for out in (torch.load(path, weights_only=True), load_torch(path)):
        torch.testing.assert_close(out["a"], sd["a"], rtol=0, atol=0)
        torch.testing.assert_close(out["view"], sd["view"], rtol=0, atol=0)
        torch.testing.assert_close(out["b"]["c"], sd["b"]["c"], rtol=0, atol=0)


def test_truncated_storage_is_refused_by_torch_too(tmp_path):
    # independent truth: torch's own restricted loader also refuses the truncated archive
    case = next(c for c in CORPUS if c.name == "truncated_deca_model.tar")
    path = tmp_path / case.name
    case.build(path)
    with pytest.raises(Exception, match="size"):
        torch.load(path, weights_only=True)
    with pytest.raises(UnsafePickleError,
                       match=r"deca_model.tar: tensor 'E_flame/layers.0.weight'"):
        load_torch(path)


def test_shared_references_within_limits_still_load(tmp_path):
    # the same small list referenced 1000 times (a tree of 4000 nodes) is an honest pickle
    import pickle

    part = [1.0, 2.0, 3.0]
    path = tmp_path / "shared.pkl"
    path.write_bytes(pickle.dumps({"rows": [part] * 1000, "a": np.arange(3)}, protocol=2))
    out = load_pickle(path)
    assert len(out["rows"]) == 1000 and out["rows"][999] == part
    assert type(out["a"]) is np.ndarray and out["a"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("protocol", range(6))
def test_opcode_scan_agrees_with_pickletools(protocol):
    # independent truth: pickletools.genops walks the same opcodes (slower)
    import collections
    import pickle
    import pickletools

    from emoca.io.pickle_limits import scan_pickle

    for obj in [{"a": [1, 2.5, "x", b"y", None, True, (1, 2)], "n": 10**40},
                collections.OrderedDict(a=[1] * 3), list(range(3000)), "é" * 300]:
        data = pickle.dumps(obj, protocol=protocol)
        n_ops = sum(1 for _ in pickletools.genops(data))
        assert scan_pickle(data).max_nodes == 16 * n_ops + 100_000
        with pytest.raises(ValueError):
            scan_pickle(data[:-1])  # no STOP, or an argument cut short
