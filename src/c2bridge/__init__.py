"""c2bridge: the C2 adapter-bridging study (DINOv2 + Qwen2.5-VL features -> LTX-Video conditioning).

Data flows one way: data -> encoders -> cache -> adapters -> decoder -> metrics -> experiments -> report.
Heavy libraries (torch, diffusers, transformers) are imported by the submodules that need them, not here.
"""

__version__ = "0.1.0"
