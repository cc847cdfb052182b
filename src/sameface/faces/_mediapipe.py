"""FaceMesh face-oval masks through MediaPipe's legacy `mp.solutions` API (the `masks` extra).

FaceMesh's own detector (short-range BlazeFace) misses faces smaller than about a tenth of
the image, so it runs on a crop around the YuNet box, upscaled when small, and the mesh is
mapped back to image coordinates. The oval spans chin to brow line (no forehead or hair).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import DependencyMissingError
from .types import Face

_INSTALL = "install the `masks` extra: pip install 'sameface[masks]' (see docs/faces.md#masks for its caveats)"


def ordered_cycle(edges) -> list[int]:
    """Walk an undirected edge set forming one closed loop (FaceMesh's FACE_OVAL) into an ordered polygon."""
    adj: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    if not adj or any(len(v) != 2 for v in adj.values()):
        raise ValueError("edge set is not a simple cycle")
    start = min(adj)
    order, prev, cur = [start], start, max(adj[start])
    while cur != start:
        order.append(cur)
        a, b = adj[cur]
        prev, cur = cur, (a if a != prev else b)
    if len(order) != len(adj):
        raise ValueError("edge set has more than one loop")
    return order


def match_mesh(meshes: list[np.ndarray], bbox, max_center_dist: float = 0.5) -> int | None:
    """Index of the mesh belonging to `bbox`: centroid inside the box and nearest its centre,
    else the nearest within `max_center_dist` box diagonals; None if none qualifies."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    diag = float(np.hypot(x1 - x0, y1 - y0))
    best, best_key = None, None
    for i, pts in enumerate(meshes):
        c = pts.mean(0)
        inside = x0 <= c[0] <= x1 and y0 <= c[1] <= y1
        d = float(np.linalg.norm(c - centre))
        key = (not inside, d)
        if best_key is None or key < best_key:
            best, best_key = i, key
    if best is None or (best_key[0] and best_key[1] > max_center_dist * diag):
        return None
    return best


class FaceMeshMasker:
    """Face-oval masks from MediaPipe FaceMesh (models ship inside the mediapipe wheel).

    Args:
        margin: crop margin around the box, as a fraction of its size on each side.
        min_side: small crops are upscaled to this many pixels before FaceMesh.
    """

    def __init__(self, margin: float = 0.6, min_side: int = 384):
        try:
            import mediapipe as mp

            face_mesh = mp.solutions.face_mesh  # gone in mediapipe >= 0.10.30
        except Exception as e:  # missing, too new (no `solutions`), or broken (protobuf clash)
            raise DependencyMissingError(
                f"MediaPipe FaceMesh is not available ({type(e).__name__}: {e}); {_INSTALL}"
            ) from None
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=3, refine_landmarks=False
        )
        self._oval = ordered_cycle(face_mesh.FACEMESH_FACE_OVAL)
        self.margin, self.min_side = margin, min_side

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """FaceMesh landmarks (N, 2) in image pixels for `face`, or None when FaceMesh misses it."""
        import cv2

        h, w = image.shape[:2]
        x0, y0, x1, y1 = face.bbox
        bw, bh = x1 - x0, y1 - y0
        cx0, cy0 = max(0, int(x0 - self.margin * bw)), max(0, int(y0 - self.margin * bh))
        cx1, cy1 = (
            min(w, int(np.ceil(x1 + self.margin * bw))),
            min(h, int(np.ceil(y1 + self.margin * bh))),
        )
        crop = image[cy0:cy1, cx0:cx1]
        if crop.size == 0:
            return None
        s = max(1.0, self.min_side / max(crop.shape[:2]))
        if s > 1.0:
            crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
        ch, cw = crop.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(crop))
        meshes = [
            np.array([(p.x * cw, p.y * ch) for p in lms.landmark]) / s + np.array([cx0, cy0])
            for lms in (result.multi_face_landmarks or [])
        ]
        i = match_mesh(meshes, face.bbox)
        return None if i is None else meshes[i]

    def mask(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """uint8 H×W face-oval mask (255 inside), or None when FaceMesh misses the face."""
        import cv2

        pts = self.landmarks(image, face)
        if pts is None:
            return None
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(pts[self._oval]).astype(np.int32)], 255, lineType=cv2.LINE_8)
        return mask

    def close(self) -> None:
        self._mesh.close()
