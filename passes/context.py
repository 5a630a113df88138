"""The compilation context: an xDSL `Context` that also holds the parameter archive.

Weights never travel as MLIR text. Passes read and write them in the in-memory
:class:`~bitmod.runtime.storage.archive.ParamArchive` of the :class:`BitmodContext` they are applied
with (``ModulePass.apply(ctx, module)`` already hands every pass its context):

* ``convert-linalg-to-bitmod`` moves constant weights (``dense<...>`` literals or
  ``dense_resource`` blobs) into ``ctx.archive`` and sets the module attribute
  ``bitmod.params = ctx.params_name``;
* ``bitmod-quantize`` reads the float weights from it and stores the quantized ones.

The driver (``bitmod-opt``) builds the context with :func:`make_context`, loads the archive a
module names (resolved relative to the IR file), runs the pipeline, and saves the archive
next to its output. Python users do the same::

    ctx = make_context()
    module = parse_module(ctx, text, "model.mlir")      # bitmod.compiler.ir_io
    pipeline = PassPipeline.parse_spec(ALL_PASSES, "convert-linalg-to-bitmod,bitmod-quantize")
    pipeline.apply(ctx, module)
    ctx.archive.save("model.params.safetensors")

Each context owns its own ``builtin`` dialect object: xDSL keeps ``dense_resource`` blobs in
the builtin dialect's resource table, and sharing xDSL's module-level one between two parses
in one process renames the second file's handles (``key`` becomes ``key_0``) and detaches them
from their blobs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bitmod.dialects.diagnostics import DiagnosticError
from xdsl.context import Context
from xdsl.dialect_interfaces.op_asm import OpAsmDialectInterface
from xdsl.dialects import get_all_dialects
from xdsl.dialects.builtin import Builtin
from xdsl.ir import Dialect

if TYPE_CHECKING:
    from pathlib import Path

    from bitmod.runtime.arch.hwconfig import HardwareConfig
    from bitmod.runtime.storage.archive import ParamArchive
    from xdsl.dialects.builtin import DictionaryAttr, ModuleOp
    from xdsl.ir import Attribute

PARAMS_ATTR = "bitmod.params"
"""Module attribute naming the parameter archive file, relative to the IR file."""

PARAMS_HASH_ATTR = "bitmod.params_sha256"
"""Module attribute pinning the archive by the SHA-256 of its bytes. ``bitmod-opt`` sets it
when it writes the archive and checks it when it reads one, so an IR is never paired with
an archive another run wrote (a run killed between writing the two files)."""

DEFAULT_PARAMS_NAME = "params.safetensors"


@dataclass
class BitmodContext(Context):
    """xDSL context plus the parameter archive the passes read and write."""

    params_archive: ParamArchive | None = None
    """The archive; created empty on first use of :attr:`archive`."""
    params_name: str = DEFAULT_PARAMS_NAME
    """What ``convert-linalg-to-bitmod`` records in ``bitmod.params`` (a file name)."""

    @property
    def archive(self) -> ParamArchive:
        # Created lazily: the archive module imports torch, which runs that need no
        # weights (listing passes, reporting a malformed file) should not pay for.
        if self.params_archive is None:
            from bitmod.runtime.storage.archive import ParamArchive

            self.params_archive = ParamArchive()
        return self.params_archive

    @archive.setter
    def archive(self, archive: ParamArchive) -> None:
        self.params_archive = archive

    def clone(self) -> BitmodContext:
        base = super().clone()
        # The archive is shared, not copied: it may hold gigabytes of weights.
        return BitmodContext(
            base.allow_unregistered,
            base._loaded_dialects,
            base._loaded_ops,
            base._loaded_attrs,
            base._loaded_types,
            base._registered_dialects,
            params_archive=self.params_archive,
            params_name=self.params_name,
        )


def _fresh_builtin() -> Dialect:
    """A builtin dialect with its own (empty) dense_resource blob table."""
    return Dialect(
        Builtin.name, list(Builtin.operations), list(Builtin.attributes), [OpAsmDialectInterface()]
    )


def _linalg_dialect() -> Dialect:
    from bitmod.dialects.linalg_extras import linalg_with_extras

    return linalg_with_extras()


def _bitmod_dialect() -> Dialect:
    from bitmod.dialects.bitmod import Bitmod

    return Bitmod


def _bsisa_dialect() -> Dialect:
    module = importlib.import_module("bitmod.dialects.bsisa")
    for value in vars(module).values():
        if isinstance(value, Dialect) and value.name == "bsisa":
            return value
    raise ImportError("bitmod.dialects.bsisa defines no Dialect named 'bsisa'")


# Dialects that replace xDSL's of the same name (see the module docstring and
# bitmod.dialects.linalg_extras) and our own.
DIALECT_OVERRIDES: dict[str, Callable[[], Dialect]] = {
    Builtin.name: _fresh_builtin,
    "linalg": _linalg_dialect,
}


def _tm_tensor_dialect() -> Dialect:
    from bitmod.dialects.tm_tensor import TMTensor

    return TMTensor


PROJECT_DIALECTS: dict[str, Callable[[], Dialect]] = {
    "bitmod": _bitmod_dialect,
    "bsisa": _bsisa_dialect,
    "tm_tensor": _tm_tensor_dialect,  # torch-mlir's, which xDSL lacks
}


def make_context(allow_unregistered: bool = False) -> BitmodContext:
    """A context knowing xDSL's dialects (torch-mlir's output uses builtin, func, arith,
    linalg, tensor, math, ml_program) and ours, loaded lazily on first use."""
    ctx = BitmodContext(allow_unregistered=allow_unregistered)
    for name, factory in get_all_dialects().items():
        ctx.register_dialect(name, DIALECT_OVERRIDES.get(name, factory))
    for name, factory in PROJECT_DIALECTS.items():
        ctx.register_dialect(name, factory)
    return ctx


def archive_of(ctx: Context, pass_name: str) -> ParamArchive:
    """The archive of a :class:`BitmodContext`; a diagnostic for a plain xDSL context."""
    if not isinstance(ctx, BitmodContext):
        raise DiagnosticError(
            f"pass '{pass_name}' needs the parameter archive: apply it with a "
            "bitmod.passes.context.BitmodContext (make_context()), as bitmod-opt does"
        )
    return ctx.archive


def resource_blob(ctx: Context, handle: str) -> str | None:
    """The hex text (``0x...``) of the builtin ``dense_resource`` blob `handle`, if any."""
    builtin = ctx.get_optional_dialect(Builtin.name)
    interface = None if builtin is None else builtin.get_interface(OpAsmDialectInterface)
    if interface is None:
        return None
    return interface.lookup(handle) or None


def load_archive(ctx: BitmodContext, module: ModuleOp, base_dir: Path) -> None:
    """Load the archive ``module`` names (``bitmod.params``, relative to ``base_dir``) into
    ``ctx``, refusing one whose SHA-256 is not the module's ``bitmod.params_sha256``."""
    from bitmod.dialects.diagnostics import error_at
    from xdsl.dialects.builtin import StringAttr

    attr = module.attributes.get(PARAMS_ATTR)
    if attr is None:
        return
    # The archive (torch) only for a module that has one: tiling and lowering need no torch.
    from bitmod.runtime.storage.archive import ArchiveError, ParamArchive
    from bitmod.runtime.storage.fileio import file_sha256

    if not isinstance(attr, StringAttr):
        raise error_at(module, f"attribute {PARAMS_ATTR} must be a string (a file name)")
    path = base_dir / attr.data
    try:
        ctx.archive = ParamArchive.load(path)
    except ArchiveError as error:
        raise error_at(module, str(error)) from None
    pin = module.attributes.get(PARAMS_HASH_ATTR)
    if pin is None:
        return
    if not isinstance(pin, StringAttr):
        raise error_at(module, f"attribute {PARAMS_HASH_ATTR} must be a string (a SHA-256)")
    digest = file_sha256(path)
    if digest != pin.data:
        raise error_at(
            module,
            f"parameter archive {path} is not the one this IR was written with (its SHA-256 "
            f"is {digest[:16]}..., {PARAMS_HASH_ATTR} says {pin.data[:16]}...): another run "
            "wrote it; rerun the command that wrote this IR",
        )


MACHINE_ATTR = "bitmod.machine"
"""Module attribute recording the machine ``bitmod-tile`` planned the module's programs for, so
that ``bitmod run-mlir`` (``module_runner.run_function``) runs them on that machine: the array
(``cfg.array`` checks it), and also the buffers, accumulator depth, row groups and DRAM
bandwidth, which no instruction names and which the schedule and its cycles depend on."""

MACHINE_OPTIONS = {
    "rows": "rows",
    "cols": "cols",
    "tiles": "tiles",
    "act-buffer": "act_buffer_bytes",
    "weight-buffer": "weight_buffer_bytes",
    "max-block-rows": "max_block_rows",
    "row-groups": "row_groups",
    "dram-bytes-per-cycle": "dram_bytes_per_cycle",
}
"""``bitmod-tile``'s machine options -> the ``HardwareConfig`` fields they set."""

MACHINE_FIELDS = tuple(MACHINE_OPTIONS.values())
"""The ``HardwareConfig`` fields :data:`MACHINE_ATTR` holds (those ``bitmod-tile`` sets)."""


def machine_attribute(hardware: HardwareConfig) -> DictionaryAttr:
    """:data:`MACHINE_ATTR`'s value for ``hardware``."""
    from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, f64, i64

    entries: dict[str, Attribute] = {}
    for name in MACHINE_FIELDS:
        value = getattr(hardware, name)
        entries[name] = (
            FloatAttr(value, f64) if isinstance(value, float) else IntegerAttr(value, i64)
        )
    return DictionaryAttr(entries)


def machine_of(module: ModuleOp) -> HardwareConfig | None:
    """The machine :data:`MACHINE_ATTR` records (None: the module has none); an error at the
    module naming the entry when the attribute is not one ``bitmod-tile`` writes."""
    from bitmod.dialects.diagnostics import error_at
    from bitmod.runtime.arch.hwconfig import HardwareConfig
    from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, IntegerType

    attr = module.attributes.get(MACHINE_ATTR)
    if attr is None:
        return None
    if not isinstance(attr, DictionaryAttr):
        raise error_at(module, f"attribute {MACHINE_ATTR} must be a dictionary of the machine")
    entries = attr.data
    missing = [name for name in MACHINE_FIELDS if name not in entries]
    unknown = sorted(set(entries) - set(MACHINE_FIELDS))
    if missing or unknown:
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(unknown)}"
        raise error_at(
            module, f"attribute {MACHINE_ATTR} {what} (it holds {', '.join(MACHINE_FIELDS)})"
        )
    values: dict[str, int | float] = {}
    for name in MACHINE_FIELDS:
        entry = entries[name]
        bandwidth = name == "dram_bytes_per_cycle"
        boolean = isinstance(entry, IntegerAttr) and entry.type == IntegerType(1)
        number = isinstance(entry, IntegerAttr) or (bandwidth and isinstance(entry, FloatAttr))
        if boolean or not number:
            kind = "a number" if bandwidth else "an integer"
            shown = ("true" if entry.value.data else "false") if boolean else str(entry)  # type: ignore[attr-defined]
            raise error_at(module, f"attribute {MACHINE_ATTR}: {name} must be {kind}, got {shown}")
        value = entry.value.data  # type: ignore[attr-defined]
        values[name] = float(value) if bandwidth else int(value)
    try:
        hardware = HardwareConfig(**values)
    except ValueError as error:
        raise error_at(module, f"attribute {MACHINE_ATTR}: {error}") from None
    problem = encoding_problem(
        hardware.rows, hardware.cols, hardware.tiles, hardware.max_block_rows
    )
    if problem:
        raise error_at(
            module, f"attribute {MACHINE_ATTR}: the ISA cannot configure this machine: {problem}"
        )
    return hardware


def encoding_problem(rows: int, cols: int, tiles: int, max_block_rows: int) -> str | None:
    """Why the ISA cannot configure this array (``cfg.array``) and accumulator depth
    (``cfg.mblock``), or None."""
    from bitmod.runtime import isa

    try:
        isa.CfgArray(rows, cols, tiles).check()
        isa.CfgMblock(max_block_rows).check()
    except isa.IsaError as error:
        return str(error)
    return None
