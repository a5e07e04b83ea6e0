"""The earlier home of the TensorRT backend, kept for code written against
it: every name is re-exported from :mod:`avatarizer.runtime.tensorrt`."""
from __future__ import annotations

from .runtime.tensorrt import (ENGINE_MAGIC, MIN_TENSORRT_MAJOR, TensorRTSession,  # noqa: F401
                               cuda_buffer_library, cuda_status, gpu_info, tensorrt_status)

__all__ = ["MIN_TENSORRT_MAJOR", "TensorRTSession", "cuda_status", "gpu_info", "tensorrt_status", "cuda_buffer_library", "ENGINE_MAGIC"]
