"""Build stages for the world's vision models: recogniser, detector, context classifier, CLIP.

Each trains on the rendered pool *and* its VAE round trip (images that look like the
model's generations), so it keeps working on generated images, not only on renders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .faces import JUDGE
from .pool import NO_FACE, Pool

FACES = "faces"


def _both(work: Path, name: str) -> tuple[Pool, np.ndarray]:
    """The pool and its round-tripped images."""
    from safetensors.torch import load_file

    pool = Pool.load(work / f"{name}.safetensors")
    trip = load_file(str(work / f"{name}.latents.safetensors"))["roundtrip"].numpy()
    return pool, trip


def aligned_crops(images: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """ArcFace-aligned crops at 112 px (what `WorldRecognizer.align` makes), resized to `size`."""
    from ..faces.align import align_face
    from .nets import to_net_input

    crops = np.stack([align_face(im, lm, 112) for im, lm in zip(images, landmarks, strict=False)])
    x = to_net_input(crops, size)
    return ((x + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def stage_faces_data(config, out: Path, work: Path, progress: bool) -> dict:
    """Aligned crops of every face (renders and round trips), landmarks jittered by ±1 px
    so the recogniser tolerates the detector's small errors."""
    from safetensors.numpy import save_file

    from ..fileio import write_with
    from .trainer import rng_for

    rng = rng_for(config, "faces")
    size = 48 if config.sizes.image_size >= 64 else 24
    for name in ("pool", "heldout"):
        pool, trip = _both(work, name)
        keep = np.flatnonzero(pool.person >= 0) if name == "pool" else np.arange(len(pool))
        lm = pool.landmarks[keep] + rng.uniform(-1, 1, (len(keep), 5, 2)).astype(np.float32)
        arrays = {
            "crops": aligned_crops(pool.images[keep], lm, size),
            "crops_roundtrip": aligned_crops(trip[keep], lm, size),
            "person": pool.person[keep].astype(np.int64),
        }
        write_with(work / f"{name}.crops.safetensors", lambda tmp, a=arrays: save_file(a, str(tmp)))
    return {"crop_size": size}


def arcface_logits(
    emb: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, s: float = 30.0, m: float = 0.3
) -> torch.Tensor:
    """Additive angular margin logits (ArcFace, Deng et al. 2019): s·cos(θ_y + m) for the true class."""
    cos = emb @ F.normalize(weight, dim=-1).T
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    target = torch.cos(theta + m)
    onehot = F.one_hot(labels, cos.shape[1]).bool()
    return s * torch.where(onehot, target, cos)


def stage_recognizer(config, out: Path, work: Path, progress: bool) -> dict:
    """Metric learning over the known people with ArcFace; threshold set on held-out new people."""
    return _train_recognizer(config, out, work, progress, "recognizer", config.seed, every=1)


def stage_judge(config, out: Path, work: Path, progress: bool) -> dict:
    """A second recogniser that only scores: another seed, every other known person.

    PuLID (and any method with an ID loss) is trained to please the world recogniser, so
    judging its images with that same network flatters them; the benchmark scores with this
    one, which shares neither weights, initialisation nor half of the training people.
    """
    return _train_recognizer(config, out, work, progress, JUDGE, config.seed + 1, every=2)


def _train_recognizer(
    config, out: Path, work: Path, progress: bool, name: str, seed: int, every: int
) -> dict:
    """Train and save the recogniser `name` on known people whose index is 1 modulo `every`
    (all of them for `every=1`)."""
    from safetensors.numpy import load_file

    from .nets import FaceRecognizerNet, save_net
    from .trainer import train_loop

    data = load_file(str(work / "pool.crops.safetensors"))
    keep = data["person"] % every == every - 1
    crops = np.concatenate([data["crops"][keep], data["crops_roundtrip"][keep]])
    person = np.concatenate([data["person"][keep], data["person"][keep]])
    size = crops.shape[1]
    torch.manual_seed(seed)
    net = FaceRecognizerNet(config.sizes.recognizer_dim, size, config.sizes.net_widths)
    classes = torch.nn.Module()
    classes.weight = torch.nn.Parameter(
        torch.randn(int(person.max()) + 1, net.config["dim"]) * 0.01
    )

    def loss_fn(rng, step):
        rows = rng.integers(0, len(crops), config.batch)
        x = torch.from_numpy(crops[rows]).permute(0, 3, 1, 2).float()
        if rng.random() < 0.5:  # the world's faces are not symmetric, but pose is: flip is fair
            x = x.flip(-1)
        emb = net(x)
        labels = torch.from_numpy(person[rows])
        loss = F.cross_entropy(arcface_logits(emb, classes.weight, labels), labels)
        return loss, {}

    trained = train_loop(
        name,
        work,
        {"net": net, "classes": classes},
        loss_fn,
        config.recognizer,
        seed=seed,
        progress=progress,
    )
    net = trained["net"]
    verification = verify(net, work)
    save_net(
        net,
        out / FACES,
        name,
        {"same_person_threshold": verification["threshold"], "verification": verification},
    )
    return verification


@torch.no_grad()
def verify(net, work: Path) -> dict:
    """Same/different-person cosine on held-out new people (renders vs round trips): EER threshold."""
    from safetensors.numpy import load_file

    data = load_file(str(work / "heldout.crops.safetensors"))
    a = net(torch.from_numpy(data["crops"]).permute(0, 3, 1, 2).float()).numpy()
    b = net(torch.from_numpy(data["crops_roundtrip"]).permute(0, 3, 1, 2).float()).numpy()
    sims = a @ b.T
    same = data["person"][:, None] == data["person"][None, :]
    pos, neg = sims[same], sims[~same]
    grid = np.linspace(-1, 1, 401)
    far = np.array([(neg >= t).mean() for t in grid])
    frr = np.array([(pos < t).mean() for t in grid])
    i = int(np.argmin(np.abs(far - frr)))
    top1 = float((data["person"][sims.argmax(1)] == data["person"]).mean())
    return {
        "threshold": round(float(grid[i]), 4),
        "eer": round(float((far[i] + frr[i]) / 2), 4),
        "same_mean": round(float(pos.mean()), 4),
        "different_mean": round(float(neg.mean()), 4),
        "top1_new_people": round(top1, 4),
        "people": len(np.unique(data["person"])),
    }


def _images_and_targets(work: Path, name: str):
    pool, trip = _both(work, name)
    images = np.concatenate([pool.images, trip])
    doubled = Pool.concat([pool, pool])
    return images, doubled


def stage_detector(config, out: Path, work: Path, progress: bool) -> dict:
    """Face / no face, box and 5 landmarks, regressed as fractions of the image side."""
    from .nets import FaceDetectorNet, save_net, to_net_input
    from .trainer import train_loop

    images, pool = _images_and_targets(work, "pool")
    size = config.sizes.image_size
    net = FaceDetectorNet(size, config.sizes.net_widths)
    has_face = torch.from_numpy(pool.person != NO_FACE).float()
    boxes = torch.from_numpy(pool.boxes) / size
    lms = torch.from_numpy(pool.landmarks) / size

    def loss_fn(rng, step):
        rows = rng.integers(0, len(images), config.batch)
        out_ = net(to_net_input(images[rows], size))
        face = has_face[rows]
        loss = F.binary_cross_entropy_with_logits(out_["logit"], face)
        m = face.bool()
        if m.any():
            loss = loss + 20 * (
                F.smooth_l1_loss(out_["box"][m], boxes[rows][m], beta=0.02)
                + F.smooth_l1_loss(out_["landmarks"][m], lms[rows][m], beta=0.02)
            )
        return loss, {}

    trained = train_loop(
        "detector",
        work,
        {"net": net},
        loss_fn,
        config.detector,
        seed=config.seed,
        progress=progress,
    )
    report = detector_accuracy(trained["net"], work, size)
    save_net(trained["net"], out / FACES, "detector", {"heldout": report})
    return report


@torch.no_grad()
def detector_accuracy(net, work: Path, size: int) -> dict:
    """Held-out new people (renders and round trips): detection rate, landmark error / eye distance."""
    from .nets import to_net_input

    images, pool = _images_and_targets(work, "heldout")
    res = net(to_net_input(images, size))
    found = torch.sigmoid(res["logit"]).numpy() >= 0.5
    pred = res["landmarks"].numpy() * size
    iod = np.linalg.norm(pool.landmarks[:, 0] - pool.landmarks[:, 1], axis=1)
    nme = np.linalg.norm(pred - pool.landmarks, axis=2).mean(1) / iod
    return {
        "detection_rate": round(float(found.mean()), 4),
        "landmark_nme": round(float(nme.mean()), 4),
    }


def stage_context(config, out: Path, work: Path, progress: bool) -> dict:
    """One classifier head per context attribute (cross-entropy)."""
    from .nets import ContextNet, save_net, to_net_input
    from .pool import CONTEXT_COLUMNS
    from .trainer import train_loop

    images, pool = _images_and_targets(work, "pool")
    size = config.sizes.image_size
    net = ContextNet(size, config.sizes.net_widths)
    labels = torch.from_numpy(pool.context.astype(np.int64))

    def loss_fn(rng, step):
        rows = rng.integers(0, len(images), config.batch)
        logits = net(to_net_input(images[rows], size))
        loss = sum(
            F.cross_entropy(logits[c], labels[rows, i]) for i, c in enumerate(CONTEXT_COLUMNS)
        )
        return loss / len(CONTEXT_COLUMNS), {}

    trained = train_loop(
        "context", work, {"net": net}, loss_fn, config.context, seed=config.seed, progress=progress
    )
    report = context_accuracy_heldout(trained["net"], work, size)
    save_net(trained["net"], out / FACES, "context", {"heldout_accuracy": report})
    return report


@torch.no_grad()
def context_accuracy_heldout(net, work: Path, size: int) -> dict:
    from .nets import to_net_input
    from .pool import CONTEXT_COLUMNS

    images, pool = _images_and_targets(work, "heldout")
    logits = net(to_net_input(images, size))
    return {
        c: round(float((logits[c].argmax(1).numpy() == pool.context[:, i]).mean()), 4)
        for i, c in enumerate(CONTEXT_COLUMNS)
    }


def stage_clip(config, out: Path, work: Path, progress: bool) -> dict:
    """CLIP's symmetric contrastive loss on (image, caption) pairs; captions name known people or say "a person"."""
    from ..fileio import write_folder_atomic
    from ..models.clip import CLIP_MEAN, CLIP_STD
    from ..models.tokenizer import clip_tokenizer
    from .models import build_clip
    from .people import People
    from .train_base import Captioner
    from .trainer import train_loop

    known, _ = People.load(out / "people.json")
    images, pool = _images_and_targets(work, "pool")
    faces = np.flatnonzero(pool.person != NO_FACE)
    tokenizer = clip_tokenizer()
    captioner = Captioner(tokenizer, known.names)
    model = build_clip(config.sizes)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1)

    def loss_fn(rng, step):
        rows = faces[rng.integers(0, len(faces), config.batch * 2)]
        batch = captioner(pool, rows, rng)
        px = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float() / 255.0
        res = model(input_ids=batch["input_ids"], pixel_values=(px - mean) / std, return_loss=True)
        return res.loss, {}

    trained = train_loop(
        "clip", work, {"clip": model}, loss_fn, config.clip, seed=config.seed, progress=progress
    )
    clip = trained["clip"].half()
    write_folder_atomic(
        out / "clip", lambda tmp: (clip.save_pretrained(tmp), tokenizer.save_pretrained(tmp))
    )
    return {}
