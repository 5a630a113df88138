"""bitmod.runtime: formats, the ISA, the architecture model, the emulator and the perf model.

Layering (each imports only those before it): ``formats`` < ``isa`` < ``arch`` <
``storage`` < ``emulator`` < ``perf``.
"""
