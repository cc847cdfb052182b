"""Row-wise int8 storage (`tensorfile.quantize_rows`): what a shipped adapter is stored as."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sameface.errors import ArtifactError
from sameface.tensorfile import (
    QUANT_TAG,
    SCALE_SUFFIX,
    quantize_rows,
    read_safetensors,
    save_safetensors,
)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 64, generator=g)
    w[3] *= 100  # rows of very different size: one scale per row keeps the small ones exact
    w[5] = 0  # an all-zero row stays zero (no division by zero)
    return {"w": w, "b": torch.randn(256, generator=g), "steps": torch.tensor([7])}


def test_round_trip_within_half_a_step_per_row(tmp_path):
    src = _tensors()
    q, tags = quantize_rows(src)
    assert q["w"].dtype == torch.int8 and q["w" + SCALE_SUFFIX].dtype == torch.float32
    assert q["b"].dtype == torch.float16 and torch.equal(q["steps"], src["steps"])
    save_safetensors(q, tmp_path / "q.safetensors", tags | {"save_id": "x"})
    back, meta = read_safetensors(tmp_path / "q.safetensors")
    assert meta == {"save_id": "x"} and set(back) == set(src)
    assert back["w"].dtype == torch.float32
    step = src["w"].abs().amax(dim=1, keepdim=True) / 127
    assert ((back["w"] - src["w"]).abs() <= step / 2 + 1e-6).all()
    assert torch.equal(back["w"][5], torch.zeros(64))
    assert torch.allclose(back["b"].float(), src["b"], atol=2e-3)  # float16, as stored
    np_back, _ = read_safetensors(tmp_path / "q.safetensors", framework="np")
    assert np.allclose(np_back["w"], back["w"].numpy())
    size_q = (tmp_path / "q.safetensors").stat().st_size
    save_safetensors({k: v.half() for k, v in src.items()}, tmp_path / "h.safetensors")
    assert size_q < 0.6 * (tmp_path / "h.safetensors").stat().st_size


@pytest.mark.parametrize(
    "case", ["orphan scale", "wrong rows", "not int8", "uint8", "unknown scheme"]
)
def test_crafted_quantised_files_are_refused(tmp_path, case):
    q, tags = quantize_rows(_tensors())
    if case == "orphan scale":
        q["ghost" + SCALE_SUFFIX] = torch.ones(4)
    elif case == "wrong rows":
        q["w" + SCALE_SUFFIX] = torch.ones(255)
    elif case == "not int8":
        q["w"] = q["w"].float()
    elif case == "uint8":
        q["w"] = q["w"].to(torch.uint8)
    else:
        tags = {QUANT_TAG: "int4-blocks"}
    save_safetensors(q, tmp_path / "q.safetensors", tags)
    with pytest.raises(ArtifactError, match=r"q\.safetensors"):
        read_safetensors(tmp_path / "q.safetensors")


def test_reserved_suffix_is_refused():
    with pytest.raises(ValueError, match="reserved"):
        quantize_rows({"a" + SCALE_SUFFIX: torch.ones(2, 2)})
