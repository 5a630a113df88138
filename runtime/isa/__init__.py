"""bsisa, the BitMoD bit-serial ISA (``docs/ISA.md``): its one Python definition.

Opcodes, field layouts, the binary container and the text assembly. Imports nothing of ours
but the format registry (for format ids), so the compiler, the emulator and the RTL
generator all build on it.
"""

from bitmod.runtime.isa.core import *  # noqa: F403
from bitmod.runtime.isa.core import __all__  # noqa: F401
