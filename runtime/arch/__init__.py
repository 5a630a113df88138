"""The architecture: hardware configuration, the GEMM schedule planner and the loop nests.

* :mod:`.hwconfig`: :class:`~.hwconfig.HardwareConfig` (array, buffers, DRAM, energy, area);
* :mod:`.schedule`: which loop order, block rows and K chunk a GEMM runs with, and its cost;
* :mod:`.loops`: a schedule's code (``matmul_config`` / ``matmul_nest``);
* :mod:`.trace`: the engine command each block operation becomes (machine and planner alike);
* :mod:`.nest`: that schedule as a bsisa program (``matmul_program``).
"""
