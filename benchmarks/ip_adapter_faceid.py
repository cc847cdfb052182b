"""IP-Adapter-FaceID generation cost: per-step time of sameface's model against diffusers'
own IP-Adapter-FaceID loading the same weights, and against the plain pipeline.

One process builds the real SD1.5 architecture with random weights (the speed does not
depend on the weights), makes an IP-Adapter-FaceID of the release's shape (4 tokens, rank-128
LoRA on every attention projection) and saves it (the release's key layout), then times the
denoising step of diffusers' own `StableDiffusionPipeline` at 256 px with classifier-free
guidance (UNet batch 2), three ways:

  * plain     — the pipeline as diffusers ships it;
  * sameface  — the folder loaded by `FaceIDModel.load` (LoRA through peft, the ID branch as
    an attention feature), tokens passed as `cross_attention_kwargs`, as
    `IPAdapterFaceIDPipeline` passes them;
  * diffusers — the same file through `pipe.load_ip_adapter` (its FaceID projection, IP
    attention processors and the LoRA it loads through peft), given the same embedding as
    `ip_adapter_image_embeds`.

Sides alternate (plain, sameface, diffusers, plain, ...) so a slow patch of the shared machine
hits all three; each side is installed before and removed after its call, outside the timed
steps. Per-step time is the time between the ends of consecutive steps
(`callback_on_step_end`); the first step of each call is dropped. Reports the medians and the
ratios sameface / diffusers (target <= 1.05: the same model, no slower) and sameface / plain.

    python benchmarks/ip_adapter_faceid.py [--resolution 256] [--steps 4] [--repeats 3]
                                           [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steps import step_times

TARGET_VS_DIFFUSERS = 1.05


def run(args) -> dict:
    import torch
    from diffusers import DDIMScheduler

    from sameface.methods.ip_adapter_faceid.config import IPAdapterFaceIDConfig
    from sameface.methods.ip_adapter_faceid.model import WEIGHTS_FILE, FaceIDModel
    from sameface.models import real_config_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    base = real_config_base_model("sd1")
    build_s = time.perf_counter() - t0
    pipe = base.as_pipeline(scheduler=DDIMScheduler.from_config(base.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    size = {"height": args.resolution, "width": args.resolution}

    work = Path(tempfile.mkdtemp(prefix="faceid-bench-"))
    cfg = IPAdapterFaceIDConfig(recognizer="insightface", lora_rank=128)
    with FaceIDModel(base, cfg) as model:  # the release's shape; random weights
        folder = model.save(work / "faceid")
        params = sum(p.numel() for p in model.parameters())
    emb = torch.nn.functional.normalize(torch.randn(1, 1, 512), dim=-1)

    def plain(steps: int) -> list[float]:
        return step_times(pipe, steps, **size)

    def ours(steps: int) -> list[float]:
        with FaceIDModel.load(folder, base) as m:
            with torch.no_grad():
                tokens = torch.cat([m.uncond_tokens(), m.tokens(emb)])  # [negative, positive]
            kwargs = {"cross_attention_kwargs": m.cross_attention_kwargs(tokens, 1.0)}
            return step_times(pipe, steps, **size, **kwargs)

    def theirs(steps: int) -> list[float]:
        pipe.load_ip_adapter(
            str(folder), subfolder="", weight_name=WEIGHTS_FILE, image_encoder_folder=None
        )
        try:
            embeds = [torch.cat([torch.zeros_like(emb), emb])]
            return step_times(pipe, steps, **size, ip_adapter_image_embeds=embeds)
        finally:
            pipe.unload_ip_adapter()
            pipe.unload_lora_weights()  # the FaceID LoRA diffusers loaded through peft

    sides = {"plain": plain, "sameface": ours, "diffusers": theirs}
    for side in sides.values():
        side(1)  # warm-up (one timed step each, discarded)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeats):
        for name, side in sides.items():
            times[name] += side(args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "setting": {k: v for k, v in vars(args).items() if k != "json"}
        | {"family": "sd1", "cfg_batch": 2, "tokens": 4, "lora_rank": 128},
        "build_s": build_s,
        "step_s": med,
        "ratio_vs_diffusers": med["sameface"] / med["diffusers"],
        "ratio_vs_plain": med["sameface"] / med["plain"],
        "diffusers_vs_plain": med["diffusers"] / med["plain"],
        "target_vs_diffusers": TARGET_VS_DIFFUSERS,
        "all_step_s": times,
        "params": params,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per pipeline call")
    ap.add_argument("--repeats", type=int, default=3, help="pipeline calls per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be >= 1")
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s, med = out["setting"], out["step_s"]
    ok = "meets" if out["ratio_vs_diffusers"] <= TARGET_VS_DIFFUSERS else "MISSES"
    print(
        f"IP-Adapter-FaceID inference step: SD1.5 real config (random weights), "
        f"{s['resolution']} px, CFG (UNet batch 2), {s['threads']} threads, "
        f"{s['repeats']}x{s['steps']} timed steps per side"
    )
    print(f"  plain diffusers pipeline          : {med['plain']:6.2f} s / step (median)")
    print(f"  diffusers load_ip_adapter (+LoRA) : {med['diffusers']:6.2f} s / step")
    print(f"  sameface FaceIDModel (+LoRA)      : {med['sameface']:6.2f} s / step")
    print(
        f"  ratio sameface / diffusers        : {out['ratio_vs_diffusers']:.3f}  ({ok} target "
        f"<= {TARGET_VS_DIFFUSERS}); sameface / plain {out['ratio_vs_plain']:.3f}, "
        f"diffusers / plain {out['diffusers_vs_plain']:.3f}"
    )
    print(f"  {out['params']:,} parameters (projection, ID K/V, LoRA)")
    print(f"  process peak RSS: {out['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
