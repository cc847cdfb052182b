"""PuLID (seed 004) costs: per-step generation time with the ID adapter vs the plain pipeline.

Inference: one process builds the real SD1.5 architecture with random weights (the speed
does not depend on the weights) and times the denoising step of diffusers' own
`StableDiffusionPipeline` at 256 px with classifier-free guidance (UNet batch 2), twice:

  * plain   — the pipeline as diffusers ships it (the ID adapter removed: the UNet holds
    its original attention processors);
  * adapter — the same pipeline object after `install_id_adapter(unet, 768)`, with 32 ID
    tokens passed as `cross_attention_kwargs={"id_tokens": (2, 32, 768), "id_scale": 0.8}`.
    The pipeline hands `cross_attention_kwargs` to the UNet unchanged and concatenates the
    CFG batch as [negative, positive], so the tokens are (2B, N, D) in that order: the
    negative half stands for PuLID's "uncond" ID tokens (its pipeline feeds the ID encoder a
    zero embedding and uses the result for the negative branch, not zero tokens); here both
    halves are random, which costs the same.

Sides alternate (plain, adapter, plain, adapter, ...) so a slow patch of the shared machine
hits both. Per-step time is measured with a `callback_on_step_end` hook: the time between
the ends of consecutive steps (UNet call + CFG combine + scheduler step); each call runs
1 + N steps and the first step (prompt encoding, first-call allocations) is dropped. The
ID encoder runs once per image, not per step, so it is not part of this figure. Reports
the medians, the ratio adapter / plain (target <= 1.15) and the adapter's parameter count.

Training stages are timed by `benchmarks/pulid_train.py`.

    python benchmarks/pulid.py [--resolution 256] [--steps 4] [--repeats 3] [--threads 2]
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

TARGET_RATIO = 1.15
NUM_ID_TOKENS = 32


def run(args) -> dict:
    import torch
    from diffusers import DDIMScheduler

    from sameface.adapters import install_id_adapter
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

    id_dim = base.unet.config.cross_attention_dim  # 768 for SD1.5
    adapter = install_id_adapter(base.unet, id_dim)
    adapter_params = sum(p.numel() for p in adapter.parameters())
    g = torch.Generator().manual_seed(1)
    # [negative, positive], the order in which the pipeline stacks the CFG batch.
    tokens = torch.randn(2, NUM_ID_TOKENS, id_dim, generator=g).to(dtype)
    id_kwargs = {"cross_attention_kwargs": {"id_tokens": tokens, "id_scale": 0.8}}
    adapter.remove()

    def plain(steps: int) -> list[float]:
        return step_times(pipe, steps, **size)

    def with_adapter(steps: int) -> list[float]:
        with adapter:  # installs, and removes on leaving
            return step_times(pipe, steps, **size, **id_kwargs)

    plain(1)  # warm-up (one timed step each, discarded)
    with_adapter(1)
    times: dict[str, list[float]] = {"plain": [], "adapter": []}
    for _ in range(args.repeats):
        times["plain"] += plain(args.steps)
        times["adapter"] += with_adapter(args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "setting": {k: v for k, v in vars(args).items() if k != "json"}
        | {"family": "sd1", "cfg_batch": 2, "id_tokens": NUM_ID_TOKENS, "id_dim": id_dim},
        "build_s": build_s,
        "plain_step_s": med["plain"],
        "adapter_step_s": med["adapter"],
        "ratio": med["adapter"] / med["plain"],
        "target_ratio": TARGET_RATIO,
        "all_step_s": times,
        "adapter_params": adapter_params,
        "adapter_layers": len(adapter.layer_names),
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
    ok = "meets" if out["ratio"] <= TARGET_RATIO else "MISSES"
    print(
        f"PuLID inference step: SD1.5 real config (random weights), {s['resolution']} px, CFG "
        f"(UNet batch 2), {s['dtype']}, {s['threads']} threads, "
        f"{s['repeats']}x{s['steps']} timed steps per side"
    )
    print(f"  plain diffusers pipeline : {out['plain_step_s']:6.2f} s / step (median)")
    print(
        f"  with ID adapter          : {out['adapter_step_s']:6.2f} s / step (median; "
        f"{NUM_ID_TOKENS} ID tokens, id_scale 0.8)"
    )
    print(f"  ratio adapter / plain    : {out['ratio']:.3f}  ({ok} target <= {TARGET_RATIO})")
    print(
        f"  adapter: {out['adapter_params']:,} parameters in {out['adapter_layers']} "
        f"cross-attention layers ({out['adapter_params'] * 4 / 2**20:.1f} MiB fp32)"
    )
    print(f"  process peak RSS: {out['peak_rss_mb']:.0f} MB")
    print("training stages: python benchmarks/pulid_train.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
