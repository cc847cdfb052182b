"""FeedFace (seed 002) generation cost: per-step time with the face-controlnet vs the plain
pipeline, beside the FLOP ratio the control blocks imply.

One process builds the real SD1.5 architecture with random weights (the speed does not
depend on the weights) and times the denoising step of diffusers' own
`StableDiffusionPipeline` at 256 px with classifier-free guidance (UNet batch 2), twice:

  * plain    — the pipeline as diffusers ships it (no hooks on the UNet);
  * feedface — the same pipeline object with FeedFace's control blocks attached beside all
    16 transformer blocks (`ControlBlocks.install`), conditioned on 50 face tokens per
    sample (one ViT-B/32 reference: CLS + 49 patches, the default `clip_output: hidden`)
    through `cross_attention_kwargs={"control_tokens": (2, 50, 768), "control_scale": 1}`.

The control blocks duplicate part of each transformer block's work, so the honest yardstick
is the FLOP ratio: `torch.utils.flop_counter` counts one UNet call with and without the
control blocks (matmuls, convolutions, attention). The measured time ratio should come within
1.05× of it (`time ratio / FLOP ratio <= 1.05`): the hooks and the extra kernels cost no
more than their arithmetic.

Sides alternate (plain, feedface, plain, ...) so a slow patch of the shared machine hits
both. Per-step time is the time between the ends of consecutive steps (`callback_on_step_end`;
UNet call + CFG combine + scheduler step); the first step of each call is dropped. The CLIP
face encoder runs once per identity (personalise), not per step.

Training cost: `python benchmarks/feedface_train.py`.

    python benchmarks/feedface.py [--resolution 256] [--steps 4] [--repeats 3] [--threads 2]
                                  [--dtype float32|bfloat16] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steps import step_times

TARGET_OVER_FLOPS = 1.05
FACE_TOKENS = 50  # one ViT-B/32 reference: CLS + 7x7 patches


def unet_flops(unet, latents, t, hidden, **kwargs) -> int:
    """FLOPs of one UNet call (torch's counter: matmul, conv, attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(latents, t, hidden, **kwargs)
    return counter.get_total_flops()


def run(args) -> dict:
    import torch
    from diffusers import DDIMScheduler

    from sameface.adapters.control_blocks import SCALE_KEY, TOKENS_KEY, ControlBlocks
    from sameface.models import real_config_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    t0 = time.perf_counter()
    base = real_config_base_model("sd1", dtype=None if dtype == torch.float32 else dtype)
    build_s = time.perf_counter() - t0
    pipe = base.as_pipeline(scheduler=DDIMScheduler.from_config(base.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    size = {"height": args.resolution, "width": args.resolution}
    dim = base.unet.config.cross_attention_dim
    controls = ControlBlocks(base.unet, dim)  # not installed yet: the UNet is plain
    control_params = sum(p.numel() for p in controls.parameters())
    g = torch.Generator().manual_seed(1)
    for block in controls.blocks.values():  # trained-like outputs (zero init adds nothing)
        block.out.weight.data.normal_(0, 0.02, generator=g)
    tokens = torch.randn(2, FACE_TOKENS, dim, generator=g).to(dtype)
    face_kwargs = {"cross_attention_kwargs": {TOKENS_KEY: tokens, SCALE_KEY: 1.0}}

    lat = args.resolution // 8
    latents = torch.randn(2, 4, lat, lat, generator=g).to(dtype)
    hidden = torch.randn(2, 77, dim, generator=g).to(dtype)
    t = torch.tensor(500)
    flops_plain = unet_flops(base.unet, latents, t, hidden)
    with controls:
        flops_ff = unet_flops(base.unet, latents, t, hidden, **face_kwargs)

    def plain(steps: int) -> list[float]:
        return step_times(pipe, steps, **size)

    def feedface(steps: int) -> list[float]:
        with controls:  # attaches, and detaches on leaving
            return step_times(pipe, steps, **size, **face_kwargs)

    plain(1)  # warm-up (one timed step each, discarded)
    feedface(1)
    times: dict[str, list[float]] = {"plain": [], "feedface": []}
    for _ in range(args.repeats):
        times["plain"] += plain(args.steps)
        times["feedface"] += feedface(args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["feedface"] / med["plain"]
    flop_ratio = flops_ff / flops_plain
    return {
        "setting": {k: v for k, v in vars(args).items() if k != "json"}
        | {"family": "sd1", "cfg_batch": 2, "face_tokens": FACE_TOKENS, "dim": dim},
        "build_s": build_s,
        "plain_step_s": med["plain"],
        "feedface_step_s": med["feedface"],
        "ratio": ratio,
        "unet_gflops": flops_plain / 1e9,
        "unet_with_controls_gflops": flops_ff / 1e9,
        "flop_ratio": flop_ratio,
        "ratio_over_flop_ratio": ratio / flop_ratio,
        "target_over_flops": TARGET_OVER_FLOPS,
        "all_step_s": times,
        "control_params": control_params,
        "control_blocks": len(controls.names),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per pipeline call")
    ap.add_argument("--repeats", type=int, default=3, help="pipeline calls per side")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be >= 1")
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = out["setting"]
    over = out["ratio_over_flop_ratio"]
    ok = "meets" if over <= TARGET_OVER_FLOPS else "MISSES"
    print(
        f"FeedFace inference step: SD1.5 real config (random weights), {s['resolution']} px, "
        f"CFG (UNet batch 2), {s['dtype']}, {s['threads']} threads, "
        f"{s['repeats']}x{s['steps']} timed steps per side"
    )
    print(f"  plain diffusers pipeline : {out['plain_step_s']:6.2f} s / step (median)")
    print(
        f"  with control blocks      : {out['feedface_step_s']:6.2f} s / step (median; "
        f"{FACE_TOKENS} face tokens)"
    )
    print(f"  time ratio               : {out['ratio']:.3f}")
    print(
        f"  FLOP ratio               : {out['flop_ratio']:.3f}  ({out['unet_gflops']:.0f} -> "
        f"{out['unet_with_controls_gflops']:.0f} GFLOP per UNet call)"
    )
    print(f"  time / FLOP ratio        : {over:.3f}  ({ok} target <= {TARGET_OVER_FLOPS})")
    print(
        f"  control blocks: {out['control_params']:,} parameters beside "
        f"{out['control_blocks']} transformer blocks ({out['control_params'] * 4 / 2**20:.0f} MiB fp32)"
    )
    print(f"  process peak RSS: {out['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
