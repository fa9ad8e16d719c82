"""Suite-wide settings: offline, headless, deterministic."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
