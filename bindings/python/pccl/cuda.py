"""CUDA support of this pccl build."""

from __future__ import annotations

from . import _pccl

__all__ = ["is_available"]


def is_available() -> bool:
    """True if this build of pccl supports CUDA device memory (``pcclGetBuildInfo``).
    This build is CPU-only: CUDA tensors must be copied to the CPU first."""
    return bool(_pccl.has_cuda_support())
