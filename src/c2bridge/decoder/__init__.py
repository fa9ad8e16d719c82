"""The frozen LTX-Video decoder bridge (``LTXBridge``) and the adapter's training objective (``LossSpec``)."""
from c2bridge.decoder.ltx import FULL_MODEL_ID, LTXBridge
from c2bridge.decoder.objective import NAMED_LOSSES, SIGMA_DISTRIBUTIONS, TERMS, LossSpec, sample_sigmas

__all__ = ["FULL_MODEL_ID", "LTXBridge", "LossSpec", "NAMED_LOSSES", "SIGMA_DISTRIBUTIONS", "TERMS", "sample_sigmas"]
