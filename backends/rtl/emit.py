"""``--emit=verilog``: a directory that simulates one bsisa program on the RTL.

:func:`emit_design` writes into a new directory (atomically: a failure leaves none):

* ``rtl/``: a copy of the library and the simulation model, and the generated packages
  (``bitmod_fmt_pkg``, ``bitmod_cfg_pkg``, ``bsisa_pkg``); ``files.f`` lists them in order;
* ``program.hex``: the program image (the binary container, one byte a line, ``$readmemh``);
* ``dram.hex``: the DRAM contents: every tensor the descriptors name, laid out as the engines
  read it (docs/rtl.md, "DRAM layout"): FP16 row-major activations, outputs and biases, and
  quantized weights chunk by chunk (per channel: packed codes, packed group metadata, FP16
  channel scale);
* ``desc_base.hex``: the DRAM address of each descriptor's tensor (the host's relocation);
* ``bitmod_tb.sv``: the test bench top: loads the images, runs to ``halt``, writes every
  output tensor's bytes (``tensor<i>.hex``) and the counters (``counters.hex``) with
  ``$writememh``;
* ``memory.safetensors`` and ``program.bin``: the same program and memory image for the
  emulator (co-simulation, :mod:`bitmod.backends.rtl.cosim`), and ``design.json``.

Errors (:class:`RtlEmitError`) name the descriptor or instruction; nothing is written then.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bitmod.backends.rtl import LIBRARY_DIR, library_files
from bitmod.backends.rtl.sim import GENERATED_PACKAGES, generated_packages
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.schedule import WeightLayout
from bitmod.runtime.arch.timing import MAC_PIPELINE_CYCLES
from bitmod.runtime.formats import QuantizedTensor, get_format
from bitmod.runtime.formats.packing import pack_bits
from bitmod.runtime.isa import CfgArray, CfgKchunk, DescKind, LdWgt, Program, format_name
from bitmod.runtime.storage.archive import ParamArchive
from bitmod.runtime.storage.fileio import make_directory_beside

__all__ = [
    "COUNTERS",
    "MODEL_DIR",
    "EmittedDesign",
    "RtlEmitError",
    "emit_compiled",
    "emit_design",
    "emit_module",
    "machine_config",
    "source_files",
    "store_units",
    "test_inputs",
    "tiled_config",
]

MODEL_DIR = LIBRARY_DIR.with_name("model")
#: The order of ``counters.hex`` (one 32-bit word each).
COUNTERS = (
    "done",
    "error",
    "error_code",
    "error_where",
    "boot_cycles",
    "cycles",
    "compute",
    "dequant_tail",
    "drain",
    "dram_stall",
    "other",
)
_ALIGN = 64  # tensors start on 64-byte boundaries


class RtlEmitError(ValueError):
    """A program or memory image the RTL cannot run; the message names the place."""


@dataclass(frozen=True)
class Region:
    """A tensor in DRAM."""

    name: str
    address: int
    nbytes: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class EmittedDesign:
    directory: Path
    outputs: dict[str, Region]  # out tensors the test bench writes back
    dram_bytes: int


def source_files(generated: Path) -> list[Path]:
    """The SystemVerilog sources of a design, in compilation order."""
    packages = [generated / name for name in GENERATED_PACKAGES]
    return packages + library_files() + [MODEL_DIR / "bitmod_memory.sv"]


# --- the memory image -----------------------------------------------------------------------


def _resolve(memory: Mapping[str, Any] | ParamArchive, name: str) -> Any:
    if isinstance(memory, ParamArchive):
        if memory.is_quantized(name):
            return memory.get_quantized(name)
        return memory.get(name).numpy() if name in memory else None
    value = memory.get(name)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return value


def _fp16(value: Any, label: str, shape: tuple[int, ...], finite: bool) -> np.ndarray:
    if value is None:
        raise RtlEmitError(f"{label}: not in the memory image")
    if isinstance(value, QuantizedTensor):
        raise RtlEmitError(f"{label}: a quantized weight, expected an FP16 tensor")
    array = np.asarray(value)
    if array.dtype != np.float16:
        raise RtlEmitError(f"{label}: must be float16, got {array.dtype}")
    if tuple(array.shape) != shape:
        raise RtlEmitError(f"{label}: shape {list(array.shape)}, descriptor says {list(shape)}")
    if finite and not np.isfinite(array).all():
        raise RtlEmitError(f"{label}: holds Inf/NaN (the drain has no special values)")
    return np.ascontiguousarray(array)


def _pack_fields(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack the last axis of non-negative ``values`` (< 2^bits, bits <= 32) LSB first."""
    v = np.asarray(values, dtype=np.uint64)
    planes = ((v[..., None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    flat = planes.reshape(*v.shape[:-1], v.shape[-1] * bits)
    return np.packbits(flat, axis=-1, bitorder="little")


def weight_bytes(q: QuantizedTensor, block_k: int, where: str) -> bytes:
    """A quantized weight laid out for blocks of ``block_k`` K elements (docs/rtl.md): chunk
    by chunk, channel by channel, w(kc) bytes each (:class:`WeightLayout`)."""
    fmt = get_format(q.fmt)
    n, k = q.shape
    group = q.group_size
    sb = q.scale_bits
    if sb is None or q.channel_scale is None:
        raise RtlEmitError(f"{where}: the RTL needs SB-bit group scale codes and channel scales")
    layout = WeightLayout.of_format(q.fmt, group, sb)
    codes = q.codes.numpy().astype(np.int64)
    scales = q.scales.numpy().astype(np.int64)
    if scales.min(initial=0) < -(1 << (sb - 1)) or scales.max(initial=0) >= 1 << (sb - 1):
        raise RtlEmitError(f"{where}: a group scale code does not fit {sb} signed bits")
    sv = q.sv_index.numpy().astype(np.int64)
    zeros = None if q.zeros is None else q.zeros.numpy().astype(np.int64)
    channel = q.channel_scale.numpy().astype(np.float16)
    if not np.isfinite(channel).all():
        raise RtlEmitError(f"{where}: a channel scale is Inf/NaN")
    meta = scales & ((1 << sb) - 1)
    shift = sb
    if fmt.index_bits:
        meta |= sv << shift
        shift += fmt.index_bits
    if zeros is not None:
        meta |= zeros << shift
        shift += fmt.bits
    out = bytearray()
    for k0 in range(0, k, block_k):
        kc = min(block_k, k - k0)
        g0, g1 = k0 // group, -(-(k0 + kc) // group)
        packed_codes = pack_bits(codes[:, k0 : k0 + kc], fmt.bits)
        packed_meta = _pack_fields(meta[:, g0:g1], shift)
        rows = np.concatenate(
            [packed_codes, packed_meta, channel.view(np.uint8).reshape(n, 2)], axis=1
        )
        assert rows.shape[1] == int(layout.channel_block_bytes(kc)), (rows.shape, kc)
        out += rows.tobytes()
    return bytes(out)


def weight_block_ks(program: Program) -> dict[int, int]:
    """The K elements of the blocks each weight descriptor is loaded in (the ``cfg.kchunk``
    in effect at its ``ld.wgt``, or K); RtlEmitError if a weight is loaded two ways."""
    kchunk = None
    chosen: dict[int, int] = {}
    for index, instr in enumerate(program.instructions):
        if isinstance(instr, CfgKchunk):
            kchunk = instr.kc
        elif isinstance(instr, LdWgt):
            desc = program.descriptors[instr.desc]
            block_k = desc.dim1 if instr.k_lvl is None or kchunk is None else kchunk
            if chosen.setdefault(instr.desc, block_k) != block_k:
                raise RtlEmitError(
                    f"instruction {index} (ld.wgt): weight d{instr.desc} is loaded in blocks of "
                    f"{chosen[instr.desc]} and of {block_k} K elements; its DRAM layout takes one"
                )
    return chosen


def dram_image(
    program: Program, memory: Mapping[str, Any] | ParamArchive
) -> tuple[bytes, list[int], dict[str, Region]]:
    """(DRAM bytes, base address per descriptor, the out tensors' regions)."""
    produced = {
        program.descriptor_name(i)
        for i, d in enumerate(program.descriptors)
        if d.kind is DescKind.OUT
    }
    block_ks = weight_block_ks(program)
    regions: dict[str, Region] = {}
    contents: dict[str, bytes] = {}
    for i, desc in enumerate(program.descriptors):
        name = program.descriptor_name(i)
        label = f"descriptor d{i} ({desc.kind.name.lower()} {name!r})"
        if desc.kind is DescKind.QWEIGHT:
            value = _resolve(memory, name)
            if not isinstance(value, QuantizedTensor):
                raise RtlEmitError(f"{label}: not a quantized weight in the memory image")
            if tuple(value.shape) != (desc.dim0, desc.dim1) or value.fmt != format_name(desc.fmt):
                raise RtlEmitError(f"{label}: the weight does not match its descriptor")
            data = weight_bytes(value, block_ks.get(i, desc.dim1), label)
            shape: tuple[int, ...] = (desc.dim0, desc.dim1)
        elif desc.kind is DescKind.OUT or (desc.kind is DescKind.ACT and name in produced):
            shape = (desc.dim0, desc.dim1)
            data = bytes(2 * desc.dim0 * desc.dim1)
        else:
            finite = desc.kind is DescKind.BIAS
            shape = desc.shape
            data = _fp16(_resolve(memory, name), label, shape, finite).tobytes()
        if name in regions:
            if regions[name].nbytes != len(data):
                raise RtlEmitError(f"{label}: another descriptor of {name!r} has another size")
            if desc.kind is DescKind.OUT:
                contents[name] = data
            continue
        address = sum(-(-len(c) // _ALIGN) * _ALIGN for c in contents.values())
        regions[name] = Region(name, address, len(data), shape)
        contents[name] = data
    image = bytearray()
    for name, data in contents.items():
        assert len(image) == regions[name].address
        image += data + bytes(-len(data) % _ALIGN)
    bases = [regions[program.descriptor_name(i)].address for i in range(len(program.descriptors))]
    outputs = {
        program.descriptor_name(i): regions[program.descriptor_name(i)]
        for i, d in enumerate(program.descriptors)
        if d.kind is DescKind.OUT
    }
    return bytes(image), bases, outputs


# --- the files ------------------------------------------------------------------------------


def _hex_bytes(data: bytes) -> str:
    return "".join(f"{b:02x}\n" for b in data)


def _power_of_two(n: int, least: int = 64) -> int:
    size = least
    while size < n:
        size *= 2
    return size


def store_units(program: Program, config: HardwareConfig) -> int:
    """The bits of the controller's store bitmap the program's outputs take: per output tensor
    ``⌈M / ROWS⌉ · ⌈N / (COLS · TILES)⌉`` units (docs/rtl.md, "The controller")."""
    shapes: dict[str, tuple[int, int]] = {}
    for index, d in enumerate(program.descriptors):
        if d.kind is DescKind.OUT:
            shapes.setdefault(program.descriptor_name(index), (d.dim0, d.dim1))
    columns = config.cols * config.tiles
    return sum(-(-m // config.rows) * -(-n // columns) for m, n in shapes.values())


def testbench(sizes: dict[str, int]) -> str:
    """The test bench top (SystemVerilog) of a design: the same for every program that fits
    its capacity (the images, the image length and the output regions are files)."""
    fields = {
        "done": "32'(dut.done)",
        "error": "32'(dut.error)",
        "error_code": "32'(dut.error_code)",
        "error_where": "dut.error_where",
        "boot_cycles": "dut.boot_cycles",
        "cycles": "dut.cycles",
        "compute": "dut.cycles_compute",
        "dequant_tail": "dut.cycles_dequant_tail",
        "drain": "dut.cycles_drain",
        "dram_stall": "dut.cycles_dram_stall",
        "other": "dut.cycles_other",
    }
    copy = "\n".join(f"    counters[{i}] = {fields[name]};" for i, name in enumerate(COUNTERS))
    regions = sizes["descriptors"]
    return f"""// The test bench of an emitted design (GENERATED by bitmod.backends.rtl.emit).
`timescale 1ns / 1ps
module bitmod_tb;
  logic clk = 1'b0;
  logic rst = 1'b1;
  logic [31:0] counters [{len(COUNTERS)}];
  logic [31:0] image_length [1];
  logic [31:0] outputs [{2 * regions + 1}];  // count, then (first, last) byte of each output
  longint unsigned limit;

  bitmod_accel #(
    .ROWS(bitmod_cfg_pkg::ROWS), .COLS(bitmod_cfg_pkg::COLS), .TILES(bitmod_cfg_pkg::TILES),
    .ROW_GROUPS(bitmod_cfg_pkg::ROW_GROUPS), .ACT_BUFFER_BYTES(bitmod_cfg_pkg::ACT_BUFFER_BYTES),
    .WEIGHT_BUFFER_BYTES(bitmod_cfg_pkg::WEIGHT_BUFFER_BYTES),
    .MAX_BLOCK_ROWS(bitmod_cfg_pkg::MAX_BLOCK_ROWS), .DRAM_NUM(bitmod_cfg_pkg::DRAM_NUM),
    .DRAM_DEN(bitmod_cfg_pkg::DRAM_DEN), .PIPE(bitmod_cfg_pkg::MAC_PIPELINE_CYCLES),
    .DRAM_BYTES({sizes["dram"]}), .IMAGE_BYTES({sizes["image"]}),
    .MAX_DESC({sizes["descriptors"]}), .MAX_STRINGS({sizes["strings"]}),
    .MAX_INSTR({sizes["instructions"]}), .MAX_OUT_UNITS({sizes["output_units"]})
  ) dut (
    .clk(clk), .rst(rst), .image_length(image_length[0]), .done(), .error(),
    .error_code(), .error_where(), .boot_cycles(), .cycles(), .cycles_compute(),
    .cycles_dequant_tail(), .cycles_drain(), .cycles_dram_stall(), .cycles_other());

  always #1 clk = ~clk;

  initial begin
    $readmemh("image_length.hex", image_length);
    $readmemh("outputs.hex", outputs);
    $readmemh("program.hex", dut.controller.image);
    $readmemh("desc_base.hex", dut.controller.desc_base);
    $readmemh("dram.hex", dut.memory.dram);
    if (!$value$plusargs("limit=%d", limit)) limit = 64'd{sizes["limit"]};
    repeat (2) @(posedge clk);
    rst = 1'b0;
    while (!dut.done && limit != 0) begin
      @(posedge clk);
      limit = limit - 1;
    end
    @(negedge clk);
{copy}
    if (limit == 0) counters[1] = 32'hFFFFFFFF;  // did not finish
    $writememh("counters.hex", counters);
    if (!dut.error) begin
      for (int i = 0; i < outputs[0]; i++)
        $writememh($sformatf("tensor%0d.hex", i), dut.memory.dram, outputs[1 + 2 * i],
                   outputs[2 + 2 * i]);
    end
    $finish;
  end
endmodule
"""


def emit_design(
    program: Program,
    memory: Mapping[str, Any] | ParamArchive,
    directory: str | Path,
    config: HardwareConfig | None = None,
    *,
    image: bytes | None = None,
    capacity: dict[str, int] | None = None,
    cycle_limit: int = 1 << 40,
) -> EmittedDesign:
    """Write the design of ``program`` on ``memory`` into ``directory`` (a new directory).

    ``image`` replaces the program's encoding (a corrupted image for the refusal tests).
    ``capacity`` (keys ``dram``, ``image``, ``descriptors``, ``strings``, ``instructions``,
    ``output_units``: see :func:`store_units`)
    sizes the design's memories and tables instead of the program, so that one build runs
    every program that fits (the image's length is read from ``image_length.hex``).
    """
    config = config or HardwareConfig()
    directory = Path(directory)
    if directory.exists():
        raise RtlEmitError(f"{directory}: already exists (an emitted design is a new directory)")
    program.validate()
    dram, bases, outputs = dram_image(program, memory)
    encoded = program.encode() if image is None else bytes(image)
    needed = {
        "dram": _power_of_two(len(dram)),
        "image": _power_of_two(len(encoded)),
        "descriptors": max(1, len(program.descriptors)),
        "strings": max(1, len(program.strings)),
        "instructions": max(1, len(program.instructions)),
        "output_units": max(1, store_units(program, config)),
    }
    sizes = dict(capacity or needed)
    too_small = [key for key in needed if sizes.get(key, 0) < needed[key]]
    if too_small:
        raise RtlEmitError(
            f"the design's capacity is too small for the program: {', '.join(too_small)}"
        )
    sizes["limit"] = cycle_limit
    archive = memory if isinstance(memory, ParamArchive) else _archive(program, memory)
    work = make_directory_beside(directory)
    try:
        generated = work / "rtl"
        packages = generated_packages(generated, config)
        for source in source_files(generated)[len(packages) :]:
            shutil.copy(source, generated / source.name)
        files = [f"rtl/{p.name}" for p in source_files(generated)] + ["bitmod_tb.sv"]
        (work / "files.f").write_text("\n".join(files) + "\n")
        (work / "program.hex").write_text(_hex_bytes(encoded))
        (work / "image_length.hex").write_text(f"{len(encoded):08x}\n")
        (work / "dram.hex").write_text(_hex_bytes(dram))
        (work / "desc_base.hex").write_text("".join(f"{b:08x}\n" for b in bases) or "00000000\n")
        (work / "bitmod_tb.sv").write_text(testbench(sizes))
        regions = [len(outputs)]
        for region in outputs.values():
            regions += [region.address, region.address + region.nbytes - 1]
        (work / "outputs.hex").write_text("".join(f"{v:08x}\n" for v in regions))
        (work / "program.bin").write_bytes(encoded)
        archive.save(work / "memory.safetensors")
        design = {
            "config": _config_json(config),
            "outputs": {n: [r.address, r.nbytes, list(r.shape)] for n, r in outputs.items()},
            "counters": list(COUNTERS),
            "mac_pipeline_cycles": MAC_PIPELINE_CYCLES,
            "capacity": {key: sizes[key] for key in needed},
        }
        (work / "design.json").write_text(json.dumps(design, indent=1) + "\n")
        work.rename(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return EmittedDesign(directory, outputs, len(dram))


def _archive(program: Program, memory: Mapping[str, Any]) -> ParamArchive:
    archive = ParamArchive()
    for name in {program.descriptor_name(i) for i in range(len(program.descriptors))}:
        value = memory.get(name)
        if value is None:
            continue
        if isinstance(value, QuantizedTensor):
            archive.put_quantized(name, value)
        else:
            archive.put(name, value if isinstance(value, torch.Tensor) else np.asarray(value))
    return archive


def _config_json(config: HardwareConfig) -> dict[str, Any]:
    return {
        name: getattr(config, name)
        for name in (
            "rows",
            "cols",
            "tiles",
            "freq_hz",
            "act_buffer_bytes",
            "weight_buffer_bytes",
            "act_buffer_banks",
            "weight_buffer_banks",
            "dram_bytes_per_cycle",
            "max_block_rows",
            "row_groups",
        )
    }


# --- from a module or a compiled model ------------------------------------------------------


def machine_config(program: Program) -> HardwareConfig:
    """:class:`HardwareConfig` with the geometry of the program's first ``cfg.array``: the
    machine a ``bitmod-tile`` program was planned for, as far as the program names it (a
    module's ``bitmod.machine`` names all of it)."""

    base = HardwareConfig()
    for instr in program.instructions:
        if isinstance(instr, CfgArray):
            return dataclasses.replace(base, rows=instr.rows, cols=instr.cols, tiles=instr.tiles)
    return base


def tiled_config(tile: Any | None) -> HardwareConfig | None:
    """The machine a ``bitmod-tile`` pass (its options) planned for, or None without one."""
    if tile is None:
        return None
    return tile.hardware


def test_inputs(program: Program, memory: Mapping[str, Any] | ParamArchive, seed: int = 0) -> dict:
    """Seeded N(0, 1) FP16 values for every activation the program reads that neither the
    memory image holds nor the program stores (the inputs of a standalone design)."""
    produced = {
        program.descriptor_name(i)
        for i, d in enumerate(program.descriptors)
        if d.kind is DescKind.OUT
    }
    rng = np.random.default_rng(seed)
    inputs = {}
    for i, desc in enumerate(program.descriptors):
        name = program.descriptor_name(i)
        if desc.kind is DescKind.ACT and name not in produced and _resolve(memory, name) is None:
            inputs[name] = rng.standard_normal(desc.shape).astype(np.float16)
    return inputs


def emit_module(
    module: Any,
    archive: ParamArchive | None,
    directory: str | Path,
    config: HardwareConfig | None = None,
    seed: int = 0,
) -> EmittedDesign:
    """``bitmod-opt --emit=verilog``: the design of a lowered module's bsisa program on its
    parameter archive (biases rounded to FP16, as the host rounds them for the machine), with
    seeded inputs (:func:`test_inputs`) for the activations it reads."""
    from bitmod.backends.emit import module_to_program

    program = module_to_program(module)
    memory = _memory_mapping(archive)
    for i, desc in enumerate(program.descriptors):  # biases to the PE's FP16, as the host does
        name = program.descriptor_name(i)
        value = memory.get(name)
        if desc.kind is DescKind.BIAS and isinstance(value, torch.Tensor):
            memory[name] = value.detach().to(torch.float16).numpy()
    memory.update(test_inputs(program, memory, seed))
    machine = machine_config(program) if config is None else config
    _check_runs_on(program, memory, machine)
    return emit_design(program, memory, directory, machine)


def _check_runs_on(program: Program, memory: Mapping[str, Any], config: HardwareConfig) -> None:
    """An RtlEmitError unless ``config``'s machine runs ``program`` (its ``cfg.array``, its
    blocks in the buffers, its ``cfg.mblock`` in the accumulators): checked by the emulator's
    timing-only run, so a design is never written for a machine that refuses its program."""
    from bitmod.runtime.emulator.machine import Machine, MachineError

    try:
        Machine(config).run(program, dict(memory), compute=False)
    except MachineError as error:
        raise RtlEmitError(f"the machine cannot run this program: {error}") from None


def _memory_mapping(archive: ParamArchive | None) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    if archive is not None:
        for name in archive.names():
            memory[name] = (
                archive.get_quantized(name) if archive.is_quantized(name) else archive.get(name)
            )
    return memory


def emit_compiled(
    compiled: Any,
    example_args: Any,
    directory: str | Path,
    capacity: dict[str, int] | None = None,
) -> list[EmittedDesign]:
    """The designs of a compiled model (:func:`bitmod.compile`): one forward pass on
    ``example_args``, every program the machine runs (one per accelerated op and slice) on the
    memory image it runs on, as ``DIR/op<i>`` of one capacity (one build runs them all): the
    least that fits them, or ``capacity`` (see :func:`emit_design`)."""
    from bitmod.runtime.emulator.machine import Machine

    directory = Path(directory)
    if directory.exists():
        raise RtlEmitError(f"{directory}: already exists (an emitted design is a new directory)")
    runs: list[tuple[Program, dict[str, Any]]] = []
    machine = compiled.machine

    class Recording(Machine):
        def run(self, program, memory=None, inputs=None):  # type: ignore[override]
            image = memory if isinstance(memory, dict) else _memory_mapping(memory)
            runs.append((program, {**image, **dict(inputs or {})}))
            return super().run(program, memory, inputs)

    compiled.machine = Recording(machine.config)
    try:
        args = example_args if isinstance(example_args, tuple | list) else (example_args,)
        compiled(*args)
    finally:
        compiled.machine = machine
    if not runs:
        raise RtlEmitError("the model runs nothing on the accelerator")
    images = [(p, m, *dram_image(p, m)) for p, m in runs]
    capacity = capacity or {
        "dram": _power_of_two(max(len(d) for _, _, d, _, _ in images)),
        "image": _power_of_two(max(len(p.encode()) for p, *_ in images)),
        "descriptors": max(len(p.descriptors) for p, *_ in images),
        "strings": max(len(p.strings) for p, *_ in images),
        "instructions": max(len(p.instructions) for p, *_ in images),
        "output_units": max(1, *(store_units(p, machine.config) for p, *_ in images)),
    }
    work = make_directory_beside(directory)
    try:
        designs = [
            emit_design(p, m, work / f"op{i}", machine.config, capacity=capacity)
            for i, (p, m, *_) in enumerate(images)
        ]
        work.rename(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return [dataclasses.replace(d, directory=directory / d.directory.name) for d in designs]
