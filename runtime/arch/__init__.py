"""The architecture: hardware configuration, the GEMM schedule planner and the loop nests.

* :mod:`.hwconfig`: :class:`~.hwconfig.HardwareConfig` (array, buffers, DRAM, energy, area);
* :mod:`.schedule`: which loop order, block rows and K chunk a GEMM runs with, and its cost;
* :mod:`.nest`: that schedule as bsisa code (``matmul_config`` / ``matmul_nest`` /
  ``matmul_program``).
"""
