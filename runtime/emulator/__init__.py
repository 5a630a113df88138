"""The bit-exact emulator of the BitMoD accelerator.

* :mod:`.pe`: the PE arithmetic, vectorized over whole blocks (numpy);
* :mod:`.pe_torch`: the same arithmetic in torch on CPU or CUDA, bit-identical (integer steps);
* :mod:`.pe_triton`: its group accumulation as one fused Triton kernel (CUDA only);
* :mod:`.machine`: executes a bsisa program on a memory image with cycle, traffic and energy
  counts;
* :mod:`.reference_pe`: a scalar, one-PE golden model written from ``docs/ISA.md`` (the
  oracle of the tests, the benchmarks and the RTL testbenches).
"""
