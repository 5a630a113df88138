"""From a lowered module to a :class:`bitmod.runtime.isa.Program`, and back.

A ``bsisa.program`` maps 1:1 onto a ``Program``: its ``bsisa.desc`` ops, in order, are the
descriptor table (descriptor ``i`` is the ``i``-th ``bsisa.desc``, whatever its symbol
name); the string table is the program's ``strings`` property or, by default, the
descriptors' tensor names in first-use order; every instruction op is one instruction word
and every ``bsisa.loop`` a ``loop`` … ``endloop`` pair around its body. Encoding, the text
assembly and every range check are :mod:`bitmod.runtime.isa`'s; nothing is re-implemented
here.

``program_to_module`` names descriptor ``i`` ``@d<i>`` (as the assembly labels them and as
``bitmod-lower-to-isa`` does), so ``program_to_module(module_to_program(m))`` gives back
the program of ``m`` when ``m`` came from the lowering pass.
"""

from __future__ import annotations

from bitmod.dialects.bsisa import (
    DEFAULT_PROGRAM_NAME,
    DescOp,
    ProgramOp,
    ops_from_isa,
    ops_to_isa,
)
from bitmod.runtime import isa
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation


class EmitError(ValueError):
    """A module that holds no (or more than one) bsisa program, or one the ISA rejects."""


def find_program(module: ModuleOp) -> ProgramOp:
    """The module's single top-level ``bsisa.program``."""
    programs = [op for op in module.ops if isinstance(op, ProgramOp)]
    if not programs:
        raise EmitError(
            "the module holds no bsisa.program: run bitmod-lower-to-isa (after bitmod-tile) "
            "on a module with at least one quantized bitmod.matmul"
        )
    if len(programs) > 1:
        names = ", ".join(f"@{p.sym_name.data}" for p in programs)
        raise EmitError(
            f"the module holds {len(programs)} bsisa.program ops ({names}); expected one"
        )
    return programs[0]


def program_op_to_program(program: ProgramOp) -> isa.Program:
    """The runtime Program of one ``bsisa.program`` op (validated by the ISA)."""
    strings = program.string_table()
    string_index = {name: i for i, name in enumerate(strings)}
    descriptors = program.descriptors
    desc_index = {desc.sym_name.data: i for i, desc in enumerate(descriptors)}

    def index_of(name: str) -> int:
        if name not in desc_index:
            raise EmitError(f"@{program.sym_name.data}: unknown descriptor @{name}")
        return desc_index[name]

    try:
        table = tuple(desc.to_isa(string_index[desc.tensor.data]) for desc in descriptors)
        result = isa.Program(strings, table, tuple(ops_to_isa(program.code, index_of)))
        result.validate()
    except isa.IsaError as error:
        raise EmitError(f"@{program.sym_name.data}: {error}") from None
    return result


def module_to_program(module: ModuleOp) -> isa.Program:
    """The Program of the module's ``bsisa.program`` (EmitError if there is none)."""
    return program_op_to_program(find_program(module))


def program_to_op(program: isa.Program, name: str = DEFAULT_PROGRAM_NAME) -> ProgramOp:
    """A ``bsisa.program`` op for a runtime Program, descriptors named ``@d0``, ``@d1``, …"""
    program.validate()
    ops: list[Operation] = [
        DescOp.from_isa(f"d{i}", desc, program.strings[desc.name])
        for i, desc in enumerate(program.descriptors)
    ]
    ops += ops_from_isa(program.instructions, lambda index: f"d{index}")
    canonical = tuple(dict.fromkeys(program.strings[d.name] for d in program.descriptors))
    strings = None if program.strings == canonical else list(program.strings)
    return ProgramOp(name, ops, strings)


def program_to_module(program: isa.Program, name: str = DEFAULT_PROGRAM_NAME) -> ModuleOp:
    """A module holding just the ``bsisa.program`` of ``program``."""
    return ModuleOp([program_to_op(program, name)])
