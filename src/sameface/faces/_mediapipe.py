"""FaceMesh face-oval masks through MediaPipe's legacy `mp.solutions` API (the `masks` extra)."""

from __future__ import annotations

import numpy as np

from ..errors import DependencyMissingError
from .types import Face


def _ordered_oval(connections) -> list[int]:
    """Walk FaceMesh's FACE_OVAL edge set into one ordered polygon of landmark indices."""
    nxt = dict(connections)
    start = next(iter(nxt))
    order, cur = [start], nxt[start]
    while cur != start and len(order) <= len(nxt):
        order.append(cur)
        cur = nxt[cur]
    return order


class FaceMeshMasker:
    """Masks from MediaPipe FaceMesh (478 landmarks; shipped inside the mediapipe wheel)."""

    def __init__(self, max_faces: int = 10):
        try:
            import mediapipe as mp

            face_mesh = mp.solutions.face_mesh
        except (ImportError, AttributeError) as e:
            raise DependencyMissingError(
                "MediaPipe FaceMesh is not available (install the `masks` extra: "
                "pip install 'sameface[masks]'; see docs/faces.md for its dependency caveats)"
            ) from e
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces, refine_landmarks=False)
        self._oval = _ordered_oval(face_mesh.FACEMESH_FACE_OVAL)

    def mask(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """Face-oval mask of the mesh matching `face` (centroid inside its box), or None if FaceMesh misses it."""
        import cv2

        h, w = image.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        x0, y0, x1, y1 = face.bbox
        best, best_d = None, None
        for lms in result.multi_face_landmarks:
            pts = np.array([[p.x * w, p.y * h] for p in lms.landmark], dtype=np.float64)
            cx, cy = pts.mean(0)
            if not (x0 <= cx <= x1 and y0 <= cy <= y1):
                continue
            d = (cx - (x0 + x1) / 2) ** 2 + (cy - (y0 + y1) / 2) ** 2
            if best_d is None or d < best_d:
                best, best_d = pts, d
        if best is None:
            return None
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(best[self._oval]).astype(np.int32)], 255)
        return mask

    def close(self) -> None:
        self._mesh.close()
