"""Build stages for the people, the rendered pool and the text-to-image model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import write_folder_atomic
from .pool import ANONYMOUS, NO_FACE, Pool, render_pool
from .trainer import rng_for

BASE, REFERENCES = "base", "references"


def _people(out: Path):
    from .people import People

    return People.load(out / "people.json")


def stage_people(config, out: Path, work: Path, progress: bool) -> dict:
    from .people import make_people, save_people

    known, new = make_people(config.n_known, config.n_new, seed=config.seed)
    save_people(out / "people.json", known, new)
    return {"known": len(known.names), "new": len(new.names)}


def stage_pool(config, out: Path, work: Path, progress: bool) -> dict:
    """Render the training pool (known people, one-off "a person"s, no-face images) and a held-out set of new people."""
    from .people import sample_identities

    known, new = _people(out)
    rng = rng_for(config, "pool")
    d = known.params.shape[1]
    person = np.concatenate(
        [
            np.repeat(np.arange(len(known.names)), config.images_per_known),
            np.full(config.n_anonymous, ANONYMOUS),
            np.full(config.n_negatives, NO_FACE),
        ]
    ).astype(np.int32)
    params = np.concatenate(
        [
            np.repeat(known.params, config.images_per_known, axis=0),
            sample_identities(config.n_anonymous, rng, min_distance=0.0),
            np.zeros((config.n_negatives, d), np.float32),
        ]
    )
    order = rng.permutation(len(person))
    size = config.sizes.image_size
    pool = render_pool(
        person[order],
        params[order],
        seed=config.seed,
        size=size,
        workers=config.workers,
        progress=progress,
        desc="render pool",
    )
    pool.save(work / "pool.safetensors")
    n = config.heldout_per_new
    held = render_pool(
        np.repeat(np.arange(len(new.names)), n).astype(np.int32),
        np.repeat(new.params, n, axis=0),
        seed=config.seed + 1,
        size=size,
        workers=config.workers,
        progress=progress,
        desc="render held-out",
    )
    held.save(work / "heldout.safetensors")
    return {"pool": len(pool), "heldout": len(held)}


def stage_vae(config, out: Path, work: Path, progress: bool) -> dict:
    from .models import build_vae
    from .train_base import to_pixels, vae_loss
    from .trainer import train_loop

    pool = Pool.load(work / "pool.safetensors")
    vae = build_vae(config.sizes)

    def loss_fn(rng, step):
        rows = rng.integers(0, len(pool), config.vae_batch)
        return vae_loss(vae, to_pixels(pool.images[rows]))

    trained = train_loop(
        "vae", work, {"vae": vae}, loss_fn, config.vae, seed=config.seed, progress=progress
    )
    _save_pretrained(trained["vae"], work / "models" / "vae")
    return {}


@torch.no_grad()
def stage_latents(config, out: Path, work: Path, progress: bool) -> dict:
    """Encode the pool with the trained VAE; set SD's latent scaling factor; keep round trips.

    The round-tripped images (decoded from the latents) look like the model's generations,
    so the recogniser, detector and classifiers are trained on them too.
    """
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..fileio import write_with
    from .train_base import to_pixels

    vae = AutoencoderKL.from_pretrained(work / "models" / "vae", use_safetensors=True).eval()
    info = {}
    for name in ("pool", "heldout"):
        pool = Pool.load(work / f"{name}.safetensors")
        means, stds, trips = [], [], []
        for i in tqdm(
            range(0, len(pool), 256), desc=f"encode {name}", disable=None if progress else True
        ):
            post = vae.encode(to_pixels(pool.images[i : i + 256])).latent_dist
            means.append(post.mean)
            stds.append(post.std)
            rec = vae.decode(post.mean).sample
            trips.append(((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1))
        mean, std = torch.cat(means), torch.cat(stds)
        if name == "pool":
            faces = torch.from_numpy(pool.person != NO_FACE)
            scale = float(1.0 / mean[faces].std())
            vae.register_to_config(scaling_factor=scale)
            _save_pretrained(vae, work / "models" / "vae")
            info["scaling_factor"] = scale
            err = (torch.cat(trips).float() - torch.from_numpy(pool.images).float()).abs().mean()
            info["reconstruction_mae"] = float(err)
        scale = vae.config.scaling_factor
        tensors = {
            "mean": (mean * scale).half().contiguous(),
            "std": (std * scale).half().contiguous(),
            "roundtrip": torch.cat(trips).contiguous(),
        }
        write_with(
            work / f"{name}.latents.safetensors", lambda tmp, t=tensors: save_file(t, str(tmp))
        )
    return info


def stage_text(config, out: Path, work: Path, progress: bool) -> dict:
    """Teach the text encoder the world's vocabulary: names -> identity vectors, words -> context."""
    from ..models.tokenizer import clip_tokenizer
    from .models import build_text_encoder
    from .train_base import Captioner, TextProbes, context_sizes
    from .trainer import train_loop

    known, _ = _people(out)
    pool = Pool.load(work / "pool.safetensors")
    faces = np.flatnonzero(pool.person != NO_FACE)
    text = build_text_encoder(config.sizes)
    probes = TextProbes(config.sizes.text_hidden, pool.params.shape[1], context_sizes())
    captioner = Captioner(clip_tokenizer(), known.names)

    def loss_fn(rng, step):
        batch = captioner(pool, faces[rng.integers(0, len(faces), config.batch)], rng, "longest")
        enc = text(input_ids=batch["input_ids"])
        loss = probes.loss(enc.last_hidden_state, enc.pooler_output, batch)
        return loss, {}

    trained = train_loop(
        "text",
        work,
        {"text": text, "probes": probes},
        loss_fn,
        config.text,
        seed=config.seed,
        progress=progress,
    )
    _save_pretrained(trained["text"], work / "models" / "text_encoder")
    return {}


def stage_unet(config, out: Path, work: Path, progress: bool) -> dict:
    """Train the UNet on the cached latents with the frozen text encoder (as SD trains on frozen CLIP)."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    from ..models.tokenizer import clip_tokenizer
    from .models import build_train_scheduler, build_unet
    from .train_base import Captioner, Latents, diffusion_loss
    from .trainer import train_loop

    known, _ = _people(out)
    pool = Pool.load(work / "pool.safetensors")
    faces = np.flatnonzero(pool.person != NO_FACE)
    lat = load_file(str(work / "pool.latents.safetensors"))
    latents = Latents(lat["mean"], lat["std"])
    text = (
        CLIPTextModel.from_pretrained(work / "models" / "text_encoder", use_safetensors=True)
        .eval()
        .requires_grad_(False)
    )
    tokenizer = clip_tokenizer()
    captioner = Captioner(tokenizer, known.names, empty_rate=0.1)
    unet = build_unet(config.sizes)
    scheduler = build_train_scheduler()

    def loss_fn(rng, step):
        rows = faces[rng.integers(0, len(faces), config.batch)]
        batch = captioner(pool, rows, rng)
        with torch.no_grad():
            states = text(input_ids=batch["input_ids"]).last_hidden_state
        loss = diffusion_loss(
            unet, scheduler, latents.sample(rows), states, noise_offset=config.noise_offset
        )
        return loss, {}

    trained = train_loop(
        "unet", work, {"unet": unet}, loss_fn, config.unet, seed=config.seed, progress=progress
    )
    vae = AutoencoderKL.from_pretrained(work / "models" / "vae", use_safetensors=True)
    save_base(out / BASE, vae, text, tokenizer, trained["ema:unet"])
    return {}


def save_base(folder: Path, vae: Any, text: Any, tokenizer: Any, unet: Any) -> Path:
    """Write the StableDiffusionPipeline folder (fp16 weights) atomically."""
    import copy

    from diffusers import StableDiffusionPipeline

    from .models import build_sample_scheduler

    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).half(),
        text_encoder=copy.deepcopy(text).half(),
        tokenizer=tokenizer,
        unet=copy.deepcopy(unet).half(),
        scheduler=build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return write_folder_atomic(folder, lambda tmp: pipe.save_pretrained(tmp))


def stage_references(config, out: Path, work: Path, progress: bool) -> dict:
    """Reference photos of the first evaluation new people: plain photos, varied backgrounds."""
    from ..imageio import save_image_atomic
    from .render import Context, render

    _, new = _people(out)
    rng = rng_for(config, "references")
    for name, params in zip(new.names[: config.n_reference_people], new.params, strict=False):
        folder = out / REFERENCES / name.replace(" ", "_")
        for k in range(4):
            ctx = Context.random(rng)
            ctx = Context(
                background=ctx.background,
                pattern="plain",
                style="photo",
                framing=("portrait", "close-up")[k % 2],
            )
            img = render(params, ctx, size=config.sizes.image_size, rng=rng).image
            save_image_atomic(img, folder / f"{k}.png")
    return {"people": config.n_reference_people}


def stage_quality(config, out: Path, work: Path, progress: bool) -> dict:
    from .quality import measure_world

    return measure_world(out, config, work=work, progress=progress)


def _save_pretrained(model: Any, folder: Path) -> Path:
    return write_folder_atomic(folder, lambda tmp: model.save_pretrained(tmp))
