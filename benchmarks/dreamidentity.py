"""DreamIdentity (seed 000) costs: generation per step against plain diffusers, and encoding
one identity against the face pipeline alone.

Generation: the real SD1.5 architecture with random weights (speed does not depend on the
weights), diffusers' own pipeline at 256 px with CFG (UNet batch 2), twice with prompts of
the same token length:

  * plain  — "portrait of person person person person person, cinematic" on the pipeline as
    diffusers ships it;
  * words  — "portrait of <id>, cinematic" on `DreamIdentityPipeline`'s pipeline: the
    tokenizer copy expands <id> into its 5 pseudo-word tokens and the splice hooks write the
    identity's words into the text encoder's input (once per call, at prompt encoding).

Sides alternate; per-step times between step ends, first step dropped (prompt encoding is
in it); medians; target ratio <= 1.02.

Encoding: `Identity.from_images` on one bundled portrait (YuNet detect, align, SFace embed:
the face pipeline alone) against the same plus the M² encoder's forward pass with the
offline default backbone (SFace read at 4 stages + embedding, 5 projections to SD1.5's 768
wide words): medians of `--repeats` runs.

Self-augmented data throughput with 1 vs 2 processes: `benchmarks/dreamidentity_augment.py`.

    python benchmarks/dreamidentity.py [--resolution 256] [--steps 4] [--repeats 3] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steps import step_times

TARGET_RATIO = 1.02
REPO = Path(__file__).resolve().parents[1]


def run(args) -> dict:
    import torch

    from sameface.identity import Identity
    from sameface.methods.dreamidentity.backbones import load_backbone
    from sameface.methods.dreamidentity.config import DreamIdentityConfig
    from sameface.methods.dreamidentity.encode import encode_identity
    from sameface.methods.dreamidentity.model import M2Encoder
    from sameface.methods.dreamidentity.pipeline import DreamIdentityPipeline
    from sameface.models import real_config_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = real_config_base_model("sd1")
    cfg = DreamIdentityConfig(backbone="sface")
    model = M2Encoder(base, cfg, backbone=load_backbone("sface"))
    for per_encoder in model.proj:  # as if trained: non-zero projections
        for p in per_encoder:
            torch.nn.init.normal_(p[-1].weight, std=0.02)

    photo = (
        REPO
        / "examples"
        / "faces"
        / sorted(p.name for p in (REPO / "examples" / "faces").glob("*.jpg"))[0]
    )
    face_only, with_encoder = [], []
    identity = None
    for _ in range(args.repeats + 1):  # the first of each is a warm-up
        t0 = time.perf_counter()
        identity = Identity.from_images([photo], progress=False)
        t1 = time.perf_counter()
        words = encode_identity(model, identity, 4)
        t2 = time.perf_counter()
        face_only.append(t1 - t0)
        with_encoder.append(t2 - t0)
    face_only, with_encoder = face_only[1:], with_encoder[1:]

    meta = {"family": "sd1", "placeholder": "<id>", "num_tokens": model.k}
    plain = base.as_pipeline()
    plain.set_progress_bar_config(disable=True)
    ours = DreamIdentityPipeline(base, [w[0] for w in words], meta)
    ours.pipe.set_progress_bar_config(disable=True)
    size = {"height": args.resolution, "width": args.resolution}
    plain_prompt = "portrait of " + " ".join(["person"] * model.k) + ", cinematic"
    words_prompt = "portrait of <id>, cinematic"
    assert len(plain.tokenizer(plain_prompt).input_ids) == len(
        ours.pipe.tokenizer(
            ours.pipe.maybe_convert_prompt(words_prompt, ours.pipe.tokenizer)
        ).input_ids
    )
    step_times(plain, 1, plain_prompt, **size)  # warm-up
    step_times(ours.pipe, 1, words_prompt, **size)
    times: dict[str, list[float]] = {"plain": [], "words": []}
    for _ in range(args.repeats):
        times["plain"] += step_times(plain, args.steps, plain_prompt, **size)
        times["words"] += step_times(ours.pipe, args.steps, words_prompt, **size)
    ours.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "setting": {k: v for k, v in vars(args).items() if k != "json"}
        | {"family": "sd1", "words": model.k},
        "plain_step_s": med["plain"],
        "words_step_s": med["words"],
        "ratio": med["words"] / med["plain"],
        "target_ratio": TARGET_RATIO,
        "face_pipeline_s": statistics.median(face_only),
        "encode_identity_s": statistics.median(with_encoder),
        "encoder_overhead_s": statistics.median(with_encoder) - statistics.median(face_only),
        "all_step_s": times,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per pipeline call")
    ap.add_argument(
        "--repeats", type=int, default=3, help="pipeline calls (and encodings) per side"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = out["setting"]
    ok = "meets" if out["ratio"] <= TARGET_RATIO else "MISSES"
    print(
        f"DreamIdentity: SD1.5 real config (random weights), {s['resolution']} px, CFG, "
        f"{s['threads']} threads, {s['repeats']}x{s['steps']} timed steps per side"
    )
    print(f"  plain diffusers, same prompt length : {out['plain_step_s']:6.2f} s / step (median)")
    print(
        f"  with the identity's {s['words']} pseudo-words  : {out['words_step_s']:6.2f} s / step (median)"
    )
    print(
        f"  ratio words / plain                 : {out['ratio']:.3f}  ({ok} target <= {TARGET_RATIO})"
    )
    print(
        f"  encoding one identity: {out['encode_identity_s']:.3f} s (face pipeline alone "
        f"{out['face_pipeline_s']:.3f} s; M² encoder +{out['encoder_overhead_s']:.3f} s), medians"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
