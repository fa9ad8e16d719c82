"""Subprocess body for the kill-and-resume test: a slow extraction of a fake dataset with the tiny encoders."""
import sys

import torch
from enc_fakes import FakeImages

from c2bridge.encoders import build_encoders
from c2bridge.encoders.extraction import extract

if __name__ == "__main__":
    out, n, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.set_num_threads(1)
    extract("tiny", FakeImages(n=n, delay=delay), "train", out, batch_size=4, shard_size=4, progress=False,
            encoders=build_encoders("tiny", device="cpu"))
