"""Textual-inversion training step: sameface against diffusers' `examples/textual_inversion`, same run.

Both train 2 placeholder vectors on the same real-architecture model (real config, random
weights: the speed does not depend on the weights), resolution, batch size and dtype:

  * reference — the step of diffusers' `examples/textual_inversion/textual_inversion.py`,
    re-implemented here step for step: VAE-encode the batch and sample the latent, noise,
    text encoder with its whole token-embedding table trainable, UNet, MSE on the
    prediction-type target, backward, AdamW over the embedding table, then restore every
    row but the placeholder's;
  * sameface — `sameface.methods.textual_inversion.personalize`, unchanged: latents cached
    once, only the learned vectors trainable (reparameterised, seed 001 eq. 1), Adam.

Each side runs in its own process (clean peak memory). Time per step is the median of
per-step times after a warm-up; the sameface side is timed as the difference between a run
of 1 + N steps and a run of 1 step (the difference is N steps of the real loop). Prints the
ratio sameface / reference (target <= 1.0) and the artifact size.

    python benchmarks/textual_inversion.py [--family sd1] [--resolution 256] [--steps 4]
                                           [--dtype float32|bfloat16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import compare_sides, random_identity, run_side


def _base(args):
    import torch

    from sameface.models import real_config_base_model

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    return real_config_base_model(args.family, dtype=dtype if dtype != torch.float32 else None)


def run_reference(args) -> dict:
    """diffusers' example training step (SD1.x / SD2.x text encoder path)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    base = _base(args)
    if base.is_sdxl:
        raise SystemExit(
            "the diffusers example compared here is the SD1.x/SD2.x one; use --family sd1 or sd2"
        )
    tok, te, unet, vae = base.tokenizer, base.text_encoder, base.unet, base.vae
    weight_dtype = next(unet.parameters()).dtype
    # The example adds the placeholder tokens and initialises them from an initializer token.
    tok.add_tokens(["<id>", "<id>_1"])
    ids = tok.convert_tokens_to_ids(["<id>", "<id>_1"])
    te.resize_token_embeddings(len(tok))
    emb = te.get_input_embeddings()
    with torch.no_grad():
        init = tok.convert_tokens_to_ids(["face"])[0]
        emb.weight[ids] = emb.weight[init].clone()
    vae.requires_grad_(False)
    unet.requires_grad_(False)
    for p in te.parameters():
        p.requires_grad_(False)
    emb.weight.requires_grad_(True)  # the whole table is the optimiser's parameter
    te.to(dtype=torch.float32)  # the example keeps the text encoder in fp32
    te.train()
    orig = emb.weight.detach().clone()
    optimizer = torch.optim.AdamW(
        emb.parameters(), lr=5e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    sched = DDPMScheduler.from_config(base.scheduler.config)
    keep = torch.ones(len(tok), dtype=torch.bool)
    keep[ids] = False
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(args.batch, 3, args.resolution, args.resolution, generator=g) * 2 - 1
    input_ids = tok(
        ["a photo of <id> <id>_1"] * args.batch,
        padding="max_length",
        max_length=77,
        return_tensors="pt",
    ).input_ids

    times = []
    for _ in range(1 + args.steps):
        t0 = time.perf_counter()
        latents = (
            vae.encode(pixels.to(weight_dtype)).latent_dist.sample(g).detach()
            * vae.config.scaling_factor
        )
        noise = torch.randn(latents.shape, generator=g, dtype=latents.dtype)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=g)
        noisy = sched.add_noise(latents, noise, t)
        hidden = te(input_ids)[0].to(dtype=weight_dtype)
        pred = unet(noisy, t, hidden).sample
        target = (
            noise
            if sched.config.prediction_type == "epsilon"
            else sched.get_velocity(latents, noise, t)
        )
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        # The example then restores every row but the new tokens'.
        with torch.no_grad():
            emb.weight[keep] = orig[keep]
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[1:]), "all_step_s": times}


def run_sameface(args) -> dict:
    """sameface's real personalisation loop, timed by difference of two run lengths."""
    from sameface.methods.textual_inversion import TextualInversionConfig, personalize

    ident = random_identity(args.batch, args.resolution)
    base = _base(args)

    def timed(steps: int) -> float:
        cfg = TextualInversionConfig(
            steps=steps,
            init="face",
            resolution=args.resolution,
            batch_size=args.batch,
            flip_prob=0.0,
            checkpoint_every=0,
        )
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            personalize(ident, base, cfg, d, progress=False)
            return time.perf_counter() - t0

    timed(1)  # warm-up
    pairs = [(timed(1), timed(1 + args.steps)) for _ in range(args.repeats)]
    per_step = [(long - short) / args.steps for short, long in pairs]
    with tempfile.TemporaryDirectory() as d:
        cfg = TextualInversionConfig(
            steps=1, init="face", resolution=args.resolution, checkpoint_every=0
        )
        personalize(ident, base, cfg, d, progress=False)
        size = (Path(d) / "learned_embeds.safetensors").stat().st_size
    return {"step_s": statistics.median(per_step), "all_step_s": per_step, "artifact_bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="sd1", choices=["sd1", "sd2"])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per run")
    ap.add_argument("--repeats", type=int, default=2, help="sameface: pairs of runs to time")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--side", choices=["reference", "sameface"], help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.side:
        run_side(args, {"reference": run_reference, "sameface": run_sameface})
        return 0
    summary = compare_sides(__file__, args)
    ref, ours = summary["reference"], summary["sameface"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    s = summary["setting"]
    print(
        f"textual inversion step: {s['family']} real config, {s['resolution']} px, batch {s['batch']}, {s['dtype']}, {s['threads']} threads"
    )
    print(
        f"  diffusers example step : {ref['step_s']:7.2f} s   peak RSS {ref['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"  sameface step          : {ours['step_s']:7.2f} s   peak RSS {ours['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"  ratio sameface / diffusers: time {summary['time_ratio']:.2f}, peak memory {summary['memory_ratio']:.2f}"
    )
    print(f"  artifact: {ours['artifact_bytes']} bytes ({ours['artifact_bytes'] / 1024:.1f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
