"""Small real data files for the dataset tests: a COCO-format directory (PIL images + json) and SSv2-layout
videos written with PyAV."""
from __future__ import annotations

import json

import av
import numpy as np
from PIL import Image

N_IMAGES = 12
CORRUPT_ID = 7


def make_coco(root, n=N_IMAGES, unannotated=()):
    """Image i: a non-square photo-like canvas with one red rectangle (its instance: polygon + bbox); the ids in
    ``unannotated`` get no annotation."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, anns, captions = [], [], []
    for i in range(1, n + 1):
        w, h = (64, 48) if i % 2 else (48, 64)
        arr = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        x0, y0 = 10 + i % 5, 12 + i % 4
        x1, y1 = x0 + 20, y0 + 14
        arr[y0:y1, x0:x1] = (230, 30, 30)
        name = f"{i:012d}.jpg"
        if i == CORRUPT_ID:
            (root / "val2017" / name).write_bytes(b"\xff\xd8 not really a jpeg")
        else:
            Image.fromarray(arr).save(root / "val2017" / name, quality=95)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        if i in unannotated:
            continue
        anns.append({"id": 100 + i, "image_id": i, "category_id": 1 + i % 2, "iscrowd": 0,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)),
                     "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
        if i % 3 == 0:
            captions.append({"id": 500 + i, "image_id": i, "caption": f"A red box number {i}."})
    cats = [{"id": 1, "name": "dog", "supercategory": "animal"}, {"id": 2, "name": "cup", "supercategory": "kitchen"}]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (root / "annotations" / "captions_val2017.json").write_text(
        json.dumps({"images": images, "annotations": captions}))
    return root


N_FRAMES = 10
CODEC = "libvpx" if "libvpx" in av.codecs_available else "mpeg4"  # webm/VP8 as in SSv2; mp4 fallback
EXT = ".webm" if CODEC == "libvpx" else ".mp4"


def write_video(path, n_frames=N_FRAMES, width=48, height=32):
    """Frame k is a flat grey of level 20 * k + 10 (mod 256: decoded frames reveal which index was sampled)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODEC, rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "4", "b:v": "1M"} if CODEC == "libvpx" else {}
        for k in range(n_frames):
            arr = np.full((height, width, 3), (20 * k + 10) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_ssv2(root):
    (root / "20bn-something-something-v2").mkdir(parents=True)
    (root / "labels").mkdir()
    train = [{"id": str(100 + i), "label": f"pushing cup {i} left", "template": "Pushing [something] left",
              "placeholders": [f"cup {i}"]} for i in range(4)]
    val = [{"id": str(200 + i), "label": f"lifting box {i}", "template": "Lifting [something]",
            "placeholders": [f"box {i}"]} for i in range(4)]
    for entry in train + val:
        write_video(root / "20bn-something-something-v2" / f"{entry['id']}{EXT}")
    (root / "20bn-something-something-v2" / f"101{EXT}").write_bytes(b"\x1aE\xdf\xa3 truncated")  # broken video
    (root / "labels" / "train.json").write_text(json.dumps(train))
    (root / "labels" / "validation.json").write_text(json.dumps(val))
    return root
