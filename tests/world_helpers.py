"""Helpers of the world tests."""

from __future__ import annotations

import numpy as np

from sameface.faces.types import Face


class TruthDetector:
    """Returns each rendered image's ground-truth face (the tiny world's detector is untrained)."""

    def __init__(self, renders):
        self.faces = [
            (r.image, Face(bbox=tuple(r.box), landmarks=r.landmarks, score=1.0)) for r in renders
        ]

    def detect(self, image):
        return [f for im, f in self.faces if np.abs(im.astype(int) - image).mean() < 4][:1]


class CentreDetector:
    """Finds one face in the middle of every image (the tiny world's untrained base model draws
    no recognisable face; the self-augmented set still needs one per image to go on)."""

    def detect(self, image):
        h, w = image.shape[:2]
        box = (w * 0.25, h * 0.2, w * 0.75, h * 0.8)
        eyes_y, nose_y, mouth_y = h * 0.4, h * 0.5, h * 0.62
        landmarks = np.array(
            [[w * 0.4, eyes_y], [w * 0.6, eyes_y], [w * 0.5, nose_y], [w * 0.42, mouth_y],
             [w * 0.58, mouth_y]], np.float32,
        )  # fmt: skip
        return [Face(bbox=box, landmarks=landmarks, score=1.0)]


def new_person_identity(world, n: int = 2, seed: int = 0):
    """An identity of the world's first new person from `n` rendered portraits (their true faces)."""
    from sameface.faces import FaceAnalyzer
    from sameface.identity import Identity
    from sameface.world.render import Context, render

    rng = np.random.default_rng(seed)
    person = world.people[1].params[0]
    renders = [
        render(person, Context.random(rng), size=world.image_size, rng=rng) for _ in range(n)
    ]
    analyzer = FaceAnalyzer(world.recognizer, detector=TruthDetector(renders), min_face_size=1)
    return Identity.from_images([r.image for r in renders], analyzer=analyzer, square_expand=None)


def one_image(pipe, prompt: str = "a photo of <id>") -> np.ndarray:
    """One 2-step image of a method pipeline, seed 0, as an array."""
    import torch

    out = pipe(
        prompt, num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)
    )
    return np.asarray(out.images[0])
