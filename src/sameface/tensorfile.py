"""Safetensors files that sameface reads and writes, checked and byte-reproducible.

Every tensor file sameface is given is untrusted: `read_safetensors` checks the header
(length, JSON, dtypes, shapes, offsets that tile the data exactly, no truncation) before
the safetensors library touches it, and optionally that float values are finite and
bounded, so a crafted file ends in one clear `ArtifactError`/`ModelError` naming it.
`save_safetensors` writes a header with sorted keys, so identical content gives identical bytes.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ArtifactError

# Bytes per element for each safetensors dtype name.
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_ABS = 1e6  # no learned weight or embedding sameface writes comes near this


def save_safetensors(
    tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write `tensors` (torch tensors or numpy arrays) to `path` atomically, reproducibly.

    The header JSON has sorted keys and no spaces, so the same tensors and metadata always
    give the same bytes (the safetensors library orders metadata by hash).

    Args:
        tensors: name -> torch tensor or numpy array.
        path: destination file.
        metadata: str -> str entries for the header's `__metadata__`.
    """
    import numpy as np

    from .fileio import write_bytes_atomic

    if tensors and all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()} or None
    data = save(dict(tensors), metadata=meta)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as the library does
    return write_bytes_atomic(path, struct.pack("<Q", len(text)) + text + data[8 + n :])


def check_header(path: str | os.PathLike, error: type[Exception] = ArtifactError) -> dict:
    """The parsed header of a safetensors file, after checking it describes the file exactly.

    Raises:
        error: missing, truncated, or a header that is not JSON, names an unknown dtype, a
            shape that does not match its byte range, or byte ranges that overlap, leave gaps
            or run past the end of the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise error(f"{path}: not a safetensors file ({size} bytes, too short)")
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise error(f"{path}: corrupt safetensors file (header length {n}, file {size})")
            raw = f.read(n)
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise error(f"{path}: corrupt safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise error(f"{path}: corrupt safetensors file (header is not a JSON object)")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise error(f"{path}: corrupt safetensors file (__metadata__ must map text to text)")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        spans.append((_span(path, name, info, error), name))
    end = 0
    for (start, stop), name in sorted(spans):
        if start != end:
            what = "overlaps the previous tensor" if start < end else "leaves a gap"
            raise error(f"{path}: corrupt safetensors file (tensor {name!r} {what})")
        end = stop
    if 8 + n + end != size:
        why = "truncated" if 8 + n + end > size else "trailing bytes"
        raise error(
            f"{path}: corrupt safetensors file ({why}: data ends at {8 + n + end}, file {size})"
        )
    return header


def _span(path: Path, name: str, info: Any, error: type[Exception]) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise error(f"{path}: corrupt safetensors file (entry {name!r} is not an object)")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise error(
            f"{path}: corrupt safetensors file (tensor {name!r} has unknown dtype {dtype!r})"
        )
    ok_shape = isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    )
    ok_offsets = (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    )
    if not ok_shape or not ok_offsets:
        raise error(
            f"{path}: corrupt safetensors file (tensor {name!r} has a bad shape or offsets)"
        )
    if math.prod(shape) * DTYPE_SIZES[dtype] != offsets[1] - offsets[0]:
        raise error(
            f"{path}: corrupt safetensors file (tensor {name!r}: shape {shape} {dtype} does not "
            f"match its {offsets[1] - offsets[0]} bytes)"
        )
    return offsets[0], offsets[1]


def read_safetensors(
    path: str | os.PathLike,
    *,
    framework: str = "pt",
    error: type[Exception] = ArtifactError,
    finite: bool = True,
    max_abs: float | None = MAX_ABS,
    dtypes: Mapping[str, str] | None = None,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of a checked safetensors file.

    Args:
        path: the file.
        framework: "pt" for torch tensors, "np" for numpy arrays.
        error: the exception class to raise (`ArtifactError`, or `ModelError` for base models).
        finite: refuse NaN and infinite float values.
        max_abs: refuse float values larger than this in magnitude (None: no limit).
        dtypes: name -> expected safetensors dtype (e.g. {"embedding": "F32"}) for the names given.
        device: torch device to load onto.

    Raises:
        error: the file is missing or malformed, or a value or dtype is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: missing")
    header = check_header(path, error)
    for name, want in (dtypes or {}).items():
        got = header.get(name, {}).get("dtype") if name in header else None
        if got is not None and got != want:
            raise error(f"{path}: tensor {name!r} is {got}, expected {want}")
    try:
        if framework == "np":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(path), device=device)
    except Exception as e:  # safetensors raises its own types; the header was checked above
        raise error(f"{path}: unreadable safetensors file ({str(e).splitlines()[0]})") from None
    if finite or max_abs is not None:
        for name in sorted(tensors):
            if header[name]["dtype"] in FLOAT_DTYPES:
                check_values(tensors[name], f"{path}: tensor {name!r}", error, finite, max_abs)
    tags = dict(header.get("__metadata__", {}))
    if QUANT_TAG in tags:
        tensors = dequantize_rows(tensors, tags.pop(QUANT_TAG), f"{path}", error)
    return tensors, tags


def load_torch_weights(path: str | os.PathLike, error: type[Exception] = ArtifactError) -> Any:
    """A torch checkpoint read with `torch.load(weights_only=True)`: tensors and plain
    containers only, no pickled code runs. Anything unreadable (a pickle with code, a
    truncated or foreign file) is one `error` naming the file."""
    import torch

    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, struct.error, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise error(f"{path}: cannot read it as weights only ({first})") from None


def read_weights(
    path: str | os.PathLike,
    error: type[Exception] = ArtifactError,
    unwrap: tuple[str, ...] = ("state_dict",),
) -> dict[str, Any]:
    """The tensors of a weights file: checked safetensors (`read_safetensors`, no value
    limits), or a torch state dict (`load_torch_weights`) with the wrappers `unwrap` names
    (e.g. {"state_dict": {...}}) taken off.

    Raises:
        error: unreadable, or not a flat dict of tensors.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path, error=error, finite=False, max_abs=None)[0]
    state = load_torch_weights(path, error)
    for key in unwrap:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise error(f"{path}: not a state dict of tensors")
    return state


def state_mismatch(
    want: Mapping[str, Any], have: Mapping[str, Any], optional: frozenset[str] = frozenset()
) -> str | None:
    """How `have` (name -> tensor) fails to fill `want` (name -> shape tuple, or a tensor):
    "N missing (e.g. k); N left over (e.g. k); N of other shapes (e.g. k: shape)", or None
    when every name of `want` (less `optional`) is there with its shape and nothing more."""

    def shape(v: Any) -> tuple:
        return tuple(v.shape) if hasattr(v, "shape") else tuple(v)

    missing = sorted(set(want) - set(have) - optional)
    extra = sorted(set(have) - set(want))
    shapes = [k for k in want if k in have and shape(have[k]) != shape(want[k])]
    parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
    if extra:
        parts.append(f"{len(extra)} left over (e.g. {extra[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of other shapes (e.g. {k}: {shape(have[k])})")
    return "; ".join(parts) or None


QUANT_TAG = "sameface.quantized"
"""Metadata key of a file written by `quantize_rows` (value: its scheme, "int8-rows")."""
SCALE_SUFFIX = ".int8_scale"


def quantize_rows(tensors: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Matrices as int8 with one float32 scale per row (symmetric, absmax / 127), other
    float tensors as float16: about a quarter of float32's bytes for a shipped adapter.
    `read_safetensors` restores the matrices as float32 (each value within half a step,
    |row max| / 254).

    Returns:
        (tensors, metadata tags) for `save_safetensors`.
    """
    import torch

    out: dict[str, Any] = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"tensor name {name!r} ends in {SCALE_SUFFIX!r}, reserved")
        if not t.is_floating_point():
            out[name] = t
        elif t.ndim != 2:
            out[name] = t.half()
        else:
            t = t.detach().float()
            scale = t.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
            out[name] = torch.round(t / scale[:, None]).clamp(-127, 127).to(torch.int8)
            out[name + SCALE_SUFFIX] = scale
    return out, {QUANT_TAG: "int8-rows"}


def dequantize_rows(
    tensors: dict[str, Any], scheme: str, what: str, error: type[Exception] = ArtifactError
) -> dict[str, Any]:
    """Undo `quantize_rows`: each int8 matrix times its row scales, as float32."""
    if scheme != "int8-rows":
        raise error(f"{what}: unknown quantisation {scheme!r} (this sameface reads 'int8-rows')")
    out = {k: v for k, v in tensors.items() if not k.endswith(SCALE_SUFFIX)}
    for key in sorted(set(tensors) - set(out)):
        name, scale = key[: -len(SCALE_SUFFIX)], tensors[key]
        q = tensors.get(name)
        int8 = q is not None and str(q.dtype) in ("int8", "torch.int8")  # numpy / torch
        if not int8 or q.ndim != 2 or scale.shape != (q.shape[0],):
            raise error(f"{what}: scale {key!r} matches no int8 matrix of {scale.shape[0]} rows")
        out[name] = (
            q.astype("float32") * scale[:, None]
            if hasattr(q, "astype")
            else (q.float() * scale.float()[:, None])
        )
    return out


def check_values(
    x: Any,
    what: str,
    error: type[Exception] = ArtifactError,
    finite: bool = True,
    max_abs: float | None = MAX_ABS,
) -> None:
    """Raise `error` when float array/tensor `x` holds NaN/inf or values above `max_abs`."""
    import numpy as np

    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        return
    if finite and not np.isfinite(arr).all():
        raise error(f"{what} holds NaN or infinite values")
    if max_abs is not None and np.nanmax(np.abs(arr[np.isfinite(arr)]), initial=0.0) > max_abs:
        raise error(f"{what} holds values above {max_abs:g} in magnitude")
