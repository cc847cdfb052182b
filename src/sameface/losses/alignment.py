"""PuLID contrastive alignment losses between the ID path and the prompt-only path (seed 004).

PuLID runs the UNet twice on the same noisy latent, timestep and prompt: once with the ID
tokens (path "tid") and once without (path "t"). At every cross-attention layer the
attention recorder (`sameface.adapters.AttentionRecorder`) stores `CrossAttnRecord(query=Q, key=K)`, per head
(B, heads, L, d); these functions compare the two record dicts.

Target side. The prompt-only path's tensors are detached: they are the *target*, the
behaviour of the original model, and the loss trains the ID path (adapter, ID encoder)
to match it. Without the detach the gradient would also pull the prompt-only path
towards the ID path; with a frozen UNet that path carries no trainable weights anyway,
but detaching makes the direction explicit, avoids back-propagating through a second
UNet graph, and keeps the loss correct if some UNet weights are ever trained.

Normalisation. The paper writes ‖·‖₂ with no normalisation, and PuLID's released code
(github.com/ToTheBeginning/PuLID) is inference-only, so there is no reference to copy.
Here each layer's term is the mean over all elements of the squared difference (an MSE,
like L_simple and IP-Adapter's training losses), and the loss is the plain mean of those
over the selected layers (every layer counts the same, whatever its resolution). This
keeps the λ weights independent of resolution, batch size, head count and number of
layers; it is a monotone transform of the paper's norm, so the minimiser is the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..adapters.attention import CrossAttnRecord

__all__ = ["align_layout_loss", "align_semantic_loss", "alignment_loss"]

Records = Mapping[str, "CrossAttnRecord"]


def _layers(records_id: Records, records_txt: Records, layers: Iterable[str] | None) -> list[str]:
    """The layer names to compare: `layers`, or every layer both dicts hold (ID-path order)."""
    if layers is None:
        names = [n for n in records_id if n in records_txt]
        if not names:
            raise ValueError(
                "the two attention records share no layer; run both UNet passes with "
                "cross_attention_kwargs={'attn_record': {...}} and an attached attention recorder "
                "(an installed ID adapter attaches one)"
            )
        return names
    names = list(layers)
    if not names:
        raise ValueError("layers is empty; pass None for every recorded layer")
    missing = [n for n in names if n not in records_id or n not in records_txt]
    if missing:
        raise KeyError(f"layers not recorded in both paths: {missing[:3]}")
    return names


def _check_shapes(name: str, a: Any, b: Any, what: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"layer {name!r}: {what} shapes differ between the paths, "
            f"{tuple(a.shape)} vs {tuple(b.shape)}"
        )


def _mse(a: Any, b: Any) -> Any:
    # float32, like l_simple: records may be bf16/fp16 in mixed-precision training.
    return (a.float() - b.float()).square().mean()


def _text_response(query: Any, key: Any) -> Any:
    """Softmax(K Qᵀ/√d) Q: each text token's attention-weighted UNet query, (B, heads, L_txt, d)."""
    q, k = query.float(), key.float()
    weights = (k @ q.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)
    return weights @ q


def align_layout_loss(
    records_id: Records, records_txt: Records, layers: Iterable[str] | None = None
) -> Any:
    """L_align-layout = ‖Q_tid − Q_t‖₂ (seed 004), per-layer MSE averaged over layers.

    Args:
        records_id: layer name → `CrossAttnRecord` of the path with ID tokens (trained side).
        records_txt: layer name → `CrossAttnRecord` of the prompt-only path (target; detached).
        layers: the layer names to use; None = every layer present in both dicts.

    Returns:
        A float32 scalar tensor.

    Raises:
        ValueError: no common layer, or a layer's query shapes differ between the paths.
        KeyError: a requested layer is missing from either dict.
    """
    names = _layers(records_id, records_txt, layers)
    total = 0.0
    for name in names:
        q_id, q_t = records_id[name].query, records_txt[name].query
        _check_shapes(name, q_id, q_t, "query")
        total = total + _mse(q_id, q_t.detach())
    return total / len(names)


def align_semantic_loss(
    records_id: Records, records_txt: Records, layers: Iterable[str] | None = None
) -> Any:
    """L_align-sem = ‖Softmax(K Q_tidᵀ/√d) Q_tid − Softmax(K Q_tᵀ/√d) Q_t‖₂ (seed 004), per-layer MSE averaged over layers.

    The softmax runs over the image tokens, so each text token gets the UNet features'
    response to it; d is the head dimension and K each path's own text key (the same
    tensor in both paths, since the ID branch does not change the text keys).

    Args:
        records_id: layer name → `CrossAttnRecord` of the path with ID tokens (trained side).
        records_txt: layer name → `CrossAttnRecord` of the prompt-only path (target; detached).
        layers: the layer names to use; None = every layer present in both dicts.

    Returns:
        A float32 scalar tensor.

    Raises:
        ValueError: no common layer, or a layer's query/key shapes differ between the paths.
        KeyError: a requested layer is missing from either dict.
    """
    names = _layers(records_id, records_txt, layers)
    total = 0.0
    for name in names:
        r_id, r_t = records_id[name], records_txt[name]
        _check_shapes(name, r_id.query, r_t.query, "query")
        _check_shapes(name, r_id.key, r_t.key, "key")
        target = _text_response(r_t.query.detach(), r_t.key.detach())
        total = total + _mse(_text_response(r_id.query, r_id.key), target)
    return total / len(names)


def alignment_loss(
    records_id: Records,
    records_txt: Records,
    lambda_sem: float,
    lambda_layout: float,
    layers: Iterable[str] | None = None,
) -> Any:
    """L_align = λ_align-sem · L_align-sem + λ_align-layout · L_align-layout (seed 004).

    A term whose λ is 0 is not computed.

    Args:
        records_id: layer name → `CrossAttnRecord` of the path with ID tokens (trained side).
        records_txt: layer name → `CrossAttnRecord` of the prompt-only path (target; detached).
        lambda_sem: weight of the semantic term.
        lambda_layout: weight of the layout term.
        layers: the layer names to use; None = every layer present in both dicts.
    """
    if lambda_sem < 0 or lambda_layout < 0:
        raise ValueError(
            f"alignment weights must be >= 0, got lambda_sem={lambda_sem}, "
            f"lambda_layout={lambda_layout}"
        )
    names = _layers(records_id, records_txt, layers)
    loss: Any = 0.0
    if lambda_sem:
        loss = loss + lambda_sem * align_semantic_loss(records_id, records_txt, names)
    if lambda_layout:
        loss = loss + lambda_layout * align_layout_loss(records_id, records_txt, names)
    if isinstance(loss, float):  # both weights 0: still a tensor on the records' device
        loss = records_id[names[0]].query.new_zeros(()).float()
    return loss
