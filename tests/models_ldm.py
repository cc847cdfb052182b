"""Test helper: write a `BaseModel` as an original (LDM / SGM) single-file checkpoint.

No single-file Stable Diffusion checkpoint can be downloaded here, so tests make their own:
this inverts diffusers' `convert_ldm_*` key mapping (diffusers' own
`scripts/convert_diffusers_to_original_stable_diffusion.py`, generalised to any number of
blocks and layers per block) so `from_single_file` can be exercised on tiny and real layouts.
"""

from __future__ import annotations

import re

import torch

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _res(rest: str) -> str:
    for new, old in _RESNET:
        rest = rest.replace(new, old, 1) if rest.startswith(new) else rest
    return rest


def unet_to_ldm(sd: dict, config: dict) -> dict:
    """Diffusers UNet2DConditionModel state dict -> `model.diffusion_model.*` keys."""
    per = config["layers_per_block"] + 1
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in sd.items():
        m = None
        for src, dst in _UNET_TOP.items():
            if key.startswith(src + "."):
                m = dst + key[len(src) :]
        if m is None and (
            g := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        ):
            i, kind, j, rest = int(g[1]), g[2], int(g[3]), g[4]
            idx = 1 + i * per + j
            m = (
                f"input_blocks.{idx}.0.{_res(rest)}"
                if kind == "resnets"
                else f"input_blocks.{idx}.1.{rest}"
            )
        if m is None and (g := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)):
            m = f"input_blocks.{(int(g[1]) + 1) * per}.0.op.{g[2]}"
        if m is None and (g := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key)):
            m = f"middle_block.{2 * int(g[1])}.{_res(g[2])}"
        if m is None and (g := re.match(r"mid_block\.attentions\.0\.(.*)", key)):
            m = f"middle_block.1.{g[1]}"
        if m is None and (
            g := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        ):
            i, kind, j, rest = int(g[1]), g[2], int(g[3]), g[4]
            idx = i * per + j
            m = (
                f"output_blocks.{idx}.0.{_res(rest)}"
                if kind == "resnets"
                else f"output_blocks.{idx}.1.{rest}"
            )
        if m is None and (g := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)):
            i = int(g[1])
            m = f"output_blocks.{i * per + per - 1}.{2 if up_has_attn[i] else 1}.conv.{g[2]}"
        if m is None:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + m] = value
    return out


def vae_to_ldm(sd: dict, config: dict) -> dict:
    """Diffusers AutoencoderKL state dict -> `first_stage_model.*` keys."""
    n = len(config["block_out_channels"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in sd.items():
        m = key.replace("conv_norm_out", "norm_out")
        if g := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
            m = f"{g[1]}.mid.attn_1.{attn[g[2]]}.{g[3]}"
            if value.ndim == 2:  # LDM stores these as 1x1 convolutions
                value = value[:, :, None, None]
        elif g := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            m = f"{g[1]}.mid.block_{int(g[2]) + 1}.{g[3]}"
        elif g := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            m = f"encoder.down.{g[1]}.block.{g[2]}.{g[3]}"
        elif g := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
            m = f"encoder.down.{g[1]}.downsample.{g[2]}"
        elif g := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            m = f"decoder.up.{n - 1 - int(g[1])}.block.{g[2]}.{g[3]}"
        elif g := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
            m = f"decoder.up.{n - 1 - int(g[1])}.upsample.{g[2]}"
        out["first_stage_model." + m.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def _flat(sd: dict) -> dict:
    # transformers >= 5.6 saves CLIPTextModel without the `text_model.` prefix; accept both.
    return {k.removeprefix("text_model."): v for k, v in sd.items()}


def clip_to_ldm(sd: dict, prefix: str) -> dict:
    """HF CLIP text model -> OpenAI-CLIP-in-LDM keys (`{prefix}text_model.*`)."""
    return {
        f"{prefix}text_model.{k}": v for k, v in _flat(sd).items() if k != "text_projection.weight"
    }


def openclip_to_ldm(sd: dict, prefix: str) -> dict:
    """HF CLIP text model -> OpenCLIP keys (`{prefix}transformer.resblocks.*`, fused qkv)."""
    sd = _flat(sd)
    hidden = sd["embeddings.token_embedding.weight"].shape[1]
    out = {
        prefix + "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": sd["final_layer_norm.weight"],
        prefix + "ln_final.bias": sd["final_layer_norm.bias"],
        # OpenCLIP multiplies x @ text_projection; HF's Linear stores the transpose.
        prefix + "text_projection": sd["text_projection.weight"].T.contiguous()
        if "text_projection.weight" in sd
        else torch.eye(hidden),
    }
    names = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    for key, value in sd.items():
        g = re.match(r"encoder\.layers\.(\d+)\.(.*)\.(weight|bias)", key)
        if not g:
            continue
        block = f"{prefix}transformer.resblocks.{g[1]}."
        if g[2] == "self_attn.q_proj":
            q, k, v = (sd[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj"))
            out[block + f"attn.in_proj_{g[3]}"] = torch.cat([q, k, v], 0)
        elif g[2] == "self_attn.out_proj":
            out[block + f"attn.out_proj.{g[3]}"] = value
        elif g[2] in names:
            out[block + f"{names[g[2]]}.{g[3]}"] = value
    return out


def to_ldm_state_dict(model) -> dict:
    """A `BaseModel` as one original-layout state dict (SD1/SD2: LDM; SDXL: SGM)."""
    sd = {}
    sd.update(unet_to_ldm(model.unet.state_dict(), dict(model.unet.config)))
    sd.update(vae_to_ldm(model.vae.state_dict(), dict(model.vae.config)))
    te = [m.state_dict() for m in model.text_encoders]
    if model.family == "sd1":
        sd.update(clip_to_ldm(te[0], "cond_stage_model.transformer."))
    elif model.family == "sd2":
        sd.update(openclip_to_ldm(te[0], "cond_stage_model.model."))
    else:
        sd.update(clip_to_ldm(te[0], "conditioner.embedders.0.transformer."))
        sd.update(openclip_to_ldm(te[1], "conditioner.embedders.1.model."))
    return {k: v.contiguous() for k, v in sd.items()}
