"""The CUDA engine: ``warp.cuh`` (per-element arithmetic, ``__host__ __device__``),
``warp_kernels.cu`` (thin ``__global__`` kernels), :mod:`.launch` (CuPy) and :mod:`.host` (the
same header built with g++ for the CPU).  See ``paper_notes/cuda_engine.md``."""
