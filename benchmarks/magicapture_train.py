"""MagiCapture phase-2 training step: sameface against a diffusers DreamBooth-LoRA step, same run.

Both train a rank-4 LoRA on the UNet's attention projections (to_q/k/v/out of self- and
cross-attention, the DreamBooth-LoRA example's targets) of the same real-architecture model
(real config, random weights), resolution, batch size and dtype:

  * reference — the step of diffusers' `examples/dreambooth/train_dreambooth_lora.py`,
    re-implemented here: VAE-encode the batch and sample the latent, noise, frozen text
    encoder, UNet with the LoRA (peft, `unet.add_adapter`), MSE on the prediction-type
    target, backward, AdamW over the LoRA;
  * sameface — `sameface.methods.magicapture.personalize`, unchanged, in phase 2: latents
    cached once, the words and the LoRA trainable, masked reconstruction + the Attention
    Refocusing loss (its maps cost an explicit softmax in every cross-attention layer);
    timed without the ID loss, and apart with it (each ID step adds a UNet call at t_id, a
    VAE decode, detection and the recogniser).

Each side runs in its own process (clean peak memory). Time per step is the median after a
warm-up; the sameface side is the difference between runs of 1 + 1 and 1 + 1 + N steps
(phase 1 + phase 2), i.e. N phase-2 steps of the real loop. Prints the ratios (target <= 1.3).

    python benchmarks/magicapture_train.py [--resolution 256] [--steps 3] [--threads 2]
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
    return real_config_base_model("sd1", dtype=dtype if dtype != torch.float32 else None)


def run_reference(args) -> dict:
    """diffusers' DreamBooth-LoRA training step (SD1.x)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    base = _base(args)
    tok, te, unet, vae = base.tokenizer, base.text_encoder, base.unet, base.vae
    for m in (te, unet, vae):
        m.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    sched = DDPMScheduler.from_config(base.scheduler.config)
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(args.batch, 3, args.resolution, args.resolution, generator=g) * 2 - 1
    input_ids = tok(
        ["a photo of sks person"] * args.batch,
        padding="max_length",
        max_length=77,
        return_tensors="pt",
    ).input_ids
    weight_dtype = next(unet.parameters()).dtype
    times = []
    for _ in range(1 + args.steps):
        t0 = time.perf_counter()
        latents = (
            vae.encode(pixels.to(weight_dtype)).latent_dist.sample(g) * vae.config.scaling_factor
        )
        noise = torch.randn(latents.shape, generator=g, dtype=latents.dtype)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=g)
        noisy = sched.add_noise(latents, noise, t)
        with torch.no_grad():
            hidden = te(input_ids)[0]
        pred = unet(noisy, t, hidden).sample
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[1:]), "all_step_s": times}


def run_sameface(args) -> dict:
    """sameface's real personalisation loop, phase-2 steps timed by difference of run lengths."""
    from sameface.methods.magicapture import MagiCaptureConfig, personalize

    ident = random_identity(args.batch, args.resolution, face_box=True)
    base = _base(args)

    def timed(lora_steps: int, id_weight: float) -> float:
        cfg = MagiCaptureConfig(
            ti_steps=1,
            lora_steps=lora_steps,
            lora_targets="attention",
            id_weight=id_weight,
            resolution=args.resolution,
            batch_size=args.batch,
            flip_prob=0.0,
            checkpoint_every=0,
        )
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            personalize(ident, base, cfg, d, progress=False)
            return time.perf_counter() - t0

    out = {}
    for key, id_weight in (("step_s", 0.0), ("id_step_s", 0.25)):
        timed(1, id_weight)  # warm-up
        pairs = [
            (timed(1, id_weight), timed(1 + args.steps, id_weight)) for _ in range(args.repeats)
        ]
        per_step = [(long - short) / args.steps for short, long in pairs]
        out[key] = statistics.median(per_step)
        out["all_" + key] = per_step
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="timed phase-2 steps per run")
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
        f"MagiCapture phase-2 step: sd1 real config, {s['resolution']} px, batch {s['batch']}, {s['dtype']}, {s['threads']} threads"
    )
    print(
        f"  DreamBooth-LoRA step    : {ref['step_s']:7.2f} s   peak RSS {ref['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"  sameface step (no ID)   : {ours['step_s']:7.2f} s   peak RSS {ours['peak_rss_mb']:7.0f} MB"
    )
    print(f"  sameface step with ID   : {ours['id_step_s']:7.2f} s")
    print(
        f"  ratio sameface / diffusers: time {summary['time_ratio']:.2f} (with the ID loss "
        f"{ours['id_step_s'] / ref['step_s']:.2f}), peak memory {summary['memory_ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
