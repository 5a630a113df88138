// The controller (docs/rtl.md, "The controller"): verifies the bsisa program image, then
// executes it one instruction a cycle.
//
// Boot (its cycles are counted apart from the run): the header (magic, version, reserved
// field), the string table (one string a cycle), the sizes (truncation, trailing bytes), the
// CRC-32 of everything after the header (one byte a cycle), every descriptor and every
// instruction word (one a cycle: opcode, reserved bits, field ranges, descriptor kinds, loop
// balance, levels naming open loops), as bitmod.runtime.isa's decoder checks them; the first
// failure sets `error` with its code and byte offset / instruction index.
//
// Run: cfg.*, loop / loop.down / endloop, acc.clr, nop and halt are the controller's own
// (one cycle each; loop.down's L[lvl] counts count-1 down to 0); ld.act / ld.wgt, mac, drain
// and st.out go into the command register of the load, PE, drain or store engine (a full
// register stalls the controller) with everything the engine needs: addresses and sizes
// computed from the descriptors and the L / MR / KC registers, the format registers, and the
// counts of earlier work the command must wait for (the bookkeeping of
// runtime/emulator/machine.py's _Run, docs/rtl.md "Dependencies").
//
// Buffers (runtime/arch/trace.py's BufferRegions, docs/rtl.md "Buffers"): each operand buffer
// has REGIONS regions with a tag each (descriptor, block index, K chunk); a block takes
// r = ceil(bytes / region) of them, slot s at region s*r. A load whose tag the buffer holds
// (same r) is a hit: no load command, one cycle, that slot becomes the newest. A miss goes to
// slot misses mod (REGIONS / r) and drops the tags of the blocks it overlaps. cfg.array,
// cfg.fmt, cfg.kchunk and cfg.mblock drop every tag; st.out drops the act-buffer tags of the
// tensor it writes.
//
// Refused at run time as the emulator refuses them (docs/rtl.md, "Errors"): besides the blocks
// and registers, a program that runs off the end of its code without halt, an output element
// stored twice (at the st.out) or never (at halt), and a mac whose group sums could overflow
// the group accumulator (G * max sum of |terms| of one weight > 2^20, runtime/arch/rules.py).
//
// Stores: an output tensor is kept as a bitmap of its store units, ROWS rows by the
// COLS * TILES columns of a column block. Every st.out writes whole units (a block starts at a
// multiple of MR, itself a multiple of ROWS, and its columns are one column block; only the
// tensor's edge clips it), so the bitmap is exact: st.out checks and sets its units (at most
// MAX_BLOCK_ROWS / ROWS bits), and a per-tensor count of set units equals the tensor's units at
// halt unless an element was never stored.
module bitmod_controller #(
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int TILES = 1,
  parameter int ACT_BUFFER_BYTES = 1 << 16,
  parameter int WEIGHT_BUFFER_BYTES = 1 << 16,
  parameter int MAX_BLOCK_ROWS = 128,
  parameter int DRAM_NUM = 128,
  parameter int DRAM_DEN = 5,
  parameter int IMAGE_BYTES = 1 << 16,
  parameter int MAX_DESC = 64,
  parameter int MAX_STRINGS = 64,
  parameter int MAX_INSTR = 4096,
  parameter int MAX_OUT_UNITS = 1024,  // store units of all output tensors (the bitmap)
  localparam int COLUMNS = COLS * TILES,
  localparam int SV_BITS = bitmod_arith_pkg::SV_BITS,
  localparam int LD_W = 1 + 9 * 32,
  localparam int PE_W = 13 * 32 + 4 + 4 + 1 + 2 + 4 + 1 + 40 + 2 + 4 + 4 * SV_BITS,
  localparam int DR_W = 5 * 32 + 2 + COLUMNS,
  localparam int ST_W = 9 * 32
) (
  input  logic            clk,
  input  logic            rst,
  input  logic [31:0]     image_length,
  output logic            running,       // booted, executing
  output logic            halted,        // executed halt
  output logic            error,
  output logic [7:0]      error_code,
  output logic [31:0]     error_where,   // byte offset (boot) or instruction index
  output logic [31:0]     boot_cycles,
  input  logic            act_error,     // the PE engine saw an Inf/NaN activation
  input  logic            ld_full,
  output logic            ld_issue,
  output logic [LD_W-1:0] ld_payload,
  input  logic            pe_full,
  output logic            pe_issue,
  output logic [PE_W-1:0] pe_payload,
  input  logic            dr_full,
  output logic            dr_issue,
  output logic [DR_W-1:0] dr_payload,
  input  logic            st_full,
  output logic            st_issue,
  output logic [ST_W-1:0] st_payload
);
  // error codes (docs/rtl.md, "Errors")
  localparam logic [7:0] E_TRUNCATED = 8'd1, E_MAGIC = 8'd2, E_VERSION = 8'd3,
      E_RESERVED_HEADER = 8'd4, E_TRAILING = 8'd5, E_CRC = 8'd6, E_DESCRIPTOR = 8'd7,
      E_OPCODE = 8'd8, E_RESERVED_BITS = 8'd9, E_FIELD = 8'd10, E_LOOPS = 8'd11,
      E_LEVEL = 8'd12, E_DESC_REF = 8'd13, E_CAPACITY = 8'd14, E_GEOMETRY = 8'd15,
      E_MBLOCK = 8'd16, E_OUTSIDE = 8'd17, E_OVERFLOW = 8'd18, E_FORMAT = 8'd19,
      E_ACTIVATION = 8'd20, E_NO_HALT = 8'd21, E_STORED_TWICE = 8'd22, E_NOT_STORED = 8'd23,
      E_ACCUMULATOR = 8'd24;
  localparam logic [3:0] NO_LEVEL = 4'(bsisa_pkg::NO_LEVEL);
  localparam logic [15:0] NO_BIAS = 16'(bsisa_pkg::NO_BIAS);

  // ---- memories: the image (loaded by the test bench), descriptors, code ------------------
  logic [7:0]  image [IMAGE_BYTES];
  logic [31:0] desc_base [MAX_DESC];  // DRAM address of each descriptor's tensor (test bench)
  logic [31:0] desc_name [MAX_DESC];
  logic [7:0]  desc_kind [MAX_DESC];
  logic [7:0]  desc_fmt [MAX_DESC];
  logic [7:0]  desc_sb [MAX_DESC];
  logic [31:0] desc_dim0 [MAX_DESC];
  logic [31:0] desc_dim1 [MAX_DESC];
  logic [31:0] desc_group [MAX_DESC];
  logic [63:0] code [MAX_INSTR];

  function automatic logic [31:0] u32(input logic [31:0] at);
    u32 = {image[at + 3], image[at + 2], image[at + 1], image[at]};
  endfunction
  function automatic logic [15:0] u16(input logic [31:0] at);
    u16 = {image[at + 1], image[at]};
  endfunction
  function automatic logic [31:0] crc_step(input logic [31:0] crc, input logic [7:0] data);
    crc_step = crc ^ {24'd0, data};
    for (int i = 0; i < 8; i++) crc_step = (crc_step >> 1) ^ (crc_step[0] ? 32'hEDB88320 : 32'd0);
  endfunction

  // ---- boot ----------------------------------------------------------------------------
  typedef enum logic [2:0] {
    B_HEADER, B_STRINGS, B_SIZES, B_CRC, B_DESC, B_CODE, B_RUN, B_STOP
  } phase_t;
  phase_t phase;
  logic [31:0] n_strings, n_desc, n_instr, header_crc, position, index, crc;
  logic [31:0] desc_offset, code_offset;
  logic [3:0]  open_levels [8];  // the loop levels open at the instruction checked (a stack)
  logic [3:0]  depth;
  logic [7:0]  open_mask;

  // the descriptor at `position`
  logic [31:0] d_name, d_dim0, d_dim1, d_group;
  logic [7:0]  d_kind, d_fmt, d_sb;
  logic        d_reserved_zero, d_fmt_known, d_ok;
  logic [7:0]  probe_fmt;
  logic        probe_accelerated;
  logic [1:0]  probe_kind;
  logic [3:0]  probe_bits, probe_min_terms;
  logic        probe_sv;
  logic [1:0]  probe_index_bits;
  logic [39:0] probe_magnitudes;
  assign d_name = u32(position + bsisa_pkg::DESCRIPTOR_NAME_OFFSET);
  assign d_kind = image[position + bsisa_pkg::DESCRIPTOR_KIND_OFFSET];
  assign d_fmt = image[position + bsisa_pkg::DESCRIPTOR_FMT_OFFSET];
  assign d_sb = image[position + bsisa_pkg::DESCRIPTOR_SCALE_BITS_OFFSET];
  assign d_dim0 = u32(position + bsisa_pkg::DESCRIPTOR_DIM0_OFFSET);
  assign d_dim1 = u32(position + bsisa_pkg::DESCRIPTOR_DIM1_OFFSET);
  assign d_group = u32(position + bsisa_pkg::DESCRIPTOR_GROUP_SIZE_OFFSET);
  localparam int TAIL_BYTES = bsisa_pkg::DESCRIPTOR_RESERVED_TAIL_BYTES;
  logic [8*TAIL_BYTES-1:0] d_tail;
  for (genvar b = 0; b < TAIL_BYTES; b++) begin : descriptor_tail
    assign d_tail[8*b +: 8] = image[position + bsisa_pkg::DESCRIPTOR_RESERVED_TAIL_OFFSET + b];
  end
  logic [31:0] d_row_units, d_units;  // an output's store units (ROWS x COLUMNS)
  assign d_row_units = (d_dim0 + 32'(ROWS) - 32'd1) / 32'(ROWS);
  assign d_units = d_row_units * ((d_dim1 + 32'(COLUMNS) - 32'd1) / 32'(COLUMNS));
  assign d_reserved_zero = image[position + bsisa_pkg::DESCRIPTOR_RESERVED_OFFSET] == 8'd0
      && d_tail == '0;
  // one format decoder, shared: the descriptor checked at boot, the cfg.fmt word, the weight
  assign probe_fmt = (phase == B_DESC) ? d_fmt
      : (phase == B_CODE) ? word[bsisa_pkg::CFG_FMT_FMT_LSB +: bsisa_pkg::CFG_FMT_FMT_W] : fmt;
  bitmod_fmt_decode probe (
    .fmt(probe_fmt), .accelerated(probe_accelerated), .kind(probe_kind), .bits(probe_bits),
    .sv_enable(probe_sv), .index_bits(probe_index_bits), .min_terms(probe_min_terms),
    .magnitudes(probe_magnitudes));
  assign d_fmt_known = 32'(probe_fmt) < bitmod_fmt_pkg::N_FORMATS;
  assign d_ok = d_reserved_zero && d_kind <= 8'd3 && d_name < n_strings && d_dim0 != 32'd0
      && d_dim1 != 32'd0 && (d_kind != 8'(bsisa_pkg::DESC_KIND_BIAS) || d_dim1 == 32'd1)
      && (d_kind == 8'(bsisa_pkg::DESC_KIND_QWEIGHT)
          ? d_fmt_known && probe_accelerated && d_sb >= 8'd1 && d_sb <= 8'd15
            && d_group >= 32'd4 && d_group < 32'd65536 && d_group[1:0] == 2'd0
          : d_fmt == 8'd0 && d_sb == 8'd0 && d_group == 32'd0);

  // the instruction word at `index` (boot) or `pc` (run)
  logic [63:0] word;
  logic [7:0]  opcode;
  logic [31:0] pc;
  assign word = (phase == B_CODE)
      ? {image[position + 7], image[position + 6], image[position + 5], image[position + 4],
         image[position + 3], image[position + 2], image[position + 1], image[position]}
      : code[pc];
  assign opcode = word[63:56];

  // {known opcode, reserved bits} of an opcode
  function automatic logic [64:0] opcode_mask(input logic [7:0] op);
    case (op)
      bsisa_pkg::OP_NOP: opcode_mask = {1'b1, bsisa_pkg::NOP_RESERVED_MASK};
      bsisa_pkg::OP_HALT: opcode_mask = {1'b1, bsisa_pkg::HALT_RESERVED_MASK};
      bsisa_pkg::OP_CFG_ARRAY: opcode_mask = {1'b1, bsisa_pkg::CFG_ARRAY_RESERVED_MASK};
      bsisa_pkg::OP_CFG_SV: opcode_mask = {1'b1, bsisa_pkg::CFG_SV_RESERVED_MASK};
      bsisa_pkg::OP_CFG_FMT: opcode_mask = {1'b1, bsisa_pkg::CFG_FMT_RESERVED_MASK};
      bsisa_pkg::OP_CFG_KCHUNK: opcode_mask = {1'b1, bsisa_pkg::CFG_KCHUNK_RESERVED_MASK};
      bsisa_pkg::OP_CFG_MBLOCK: opcode_mask = {1'b1, bsisa_pkg::CFG_MBLOCK_RESERVED_MASK};
      bsisa_pkg::OP_LOOP: opcode_mask = {1'b1, bsisa_pkg::LOOP_RESERVED_MASK};
      bsisa_pkg::OP_ENDLOOP: opcode_mask = {1'b1, bsisa_pkg::ENDLOOP_RESERVED_MASK};
      bsisa_pkg::OP_LOOP_DOWN: opcode_mask = {1'b1, bsisa_pkg::LOOP_DOWN_RESERVED_MASK};
      bsisa_pkg::OP_LD_ACT: opcode_mask = {1'b1, bsisa_pkg::LD_ACT_RESERVED_MASK};
      bsisa_pkg::OP_LD_WGT: opcode_mask = {1'b1, bsisa_pkg::LD_WGT_RESERVED_MASK};
      bsisa_pkg::OP_ACC_CLR: opcode_mask = {1'b1, bsisa_pkg::ACC_CLR_RESERVED_MASK};
      bsisa_pkg::OP_MAC: opcode_mask = {1'b1, bsisa_pkg::MAC_RESERVED_MASK};
      bsisa_pkg::OP_DRAIN: opcode_mask = {1'b1, bsisa_pkg::DRAIN_RESERVED_MASK};
      bsisa_pkg::OP_ST_OUT: opcode_mask = {1'b1, bsisa_pkg::ST_OUT_RESERVED_MASK};
      default: opcode_mask = {1'b0, 64'd0};
    endcase
  endfunction
  logic [63:0] reserved_mask;
  logic        known;
  assign {known, reserved_mask} = opcode_mask(opcode);

  // the instruction's fields (each instruction's own positions, from bsisa_pkg)
  logic [3:0]  f_lvl, f_row_lvl, f_k_lvl, f_col_lvl;
  logic [15:0] f_desc, f_bias;
  logic [7:0]  f_desc_kind, f_bias_kind;
  logic [3:0]  innermost;
  assign f_lvl = (opcode == bsisa_pkg::OP_LOOP) ? 4'(word[bsisa_pkg::LOOP_LVL_LSB +: bsisa_pkg::LOOP_LVL_W])
      : (opcode == bsisa_pkg::OP_LOOP_DOWN)
        ? 4'(word[bsisa_pkg::LOOP_DOWN_LVL_LSB +: bsisa_pkg::LOOP_DOWN_LVL_W])
      : 4'(word[bsisa_pkg::ENDLOOP_LVL_LSB +: bsisa_pkg::ENDLOOP_LVL_W]);
  // a loop word's count (loop or loop.down)
  logic [31:0] f_count;
  assign f_count = (opcode == bsisa_pkg::OP_LOOP_DOWN)
      ? 32'(word[bsisa_pkg::LOOP_DOWN_COUNT_LSB +: bsisa_pkg::LOOP_DOWN_COUNT_W])
      : 32'(word[bsisa_pkg::LOOP_COUNT_LSB +: bsisa_pkg::LOOP_COUNT_W]);
  assign f_desc = (opcode == bsisa_pkg::OP_LD_WGT)
      ? word[bsisa_pkg::LD_WGT_DESC_LSB +: bsisa_pkg::LD_WGT_DESC_W]
      : (opcode == bsisa_pkg::OP_ST_OUT) ? word[bsisa_pkg::ST_OUT_DESC_LSB +: bsisa_pkg::ST_OUT_DESC_W]
      : word[bsisa_pkg::LD_ACT_DESC_LSB +: bsisa_pkg::LD_ACT_DESC_W];
  assign f_row_lvl = (opcode == bsisa_pkg::OP_ST_OUT)
      ? word[bsisa_pkg::ST_OUT_ROW_LVL_LSB +: bsisa_pkg::ST_OUT_ROW_LVL_W]
      : word[bsisa_pkg::LD_ACT_ROW_LVL_LSB +: bsisa_pkg::LD_ACT_ROW_LVL_W];
  assign f_k_lvl = (opcode == bsisa_pkg::OP_LD_WGT)
      ? word[bsisa_pkg::LD_WGT_K_LVL_LSB +: bsisa_pkg::LD_WGT_K_LVL_W]
      : word[bsisa_pkg::LD_ACT_K_LVL_LSB +: bsisa_pkg::LD_ACT_K_LVL_W];
  assign f_col_lvl = (opcode == bsisa_pkg::OP_ST_OUT)
      ? word[bsisa_pkg::ST_OUT_COL_LVL_LSB +: bsisa_pkg::ST_OUT_COL_LVL_W]
      : word[bsisa_pkg::LD_WGT_COL_LVL_LSB +: bsisa_pkg::LD_WGT_COL_LVL_W];
  assign f_bias = word[bsisa_pkg::DRAIN_BIAS_LSB +: bsisa_pkg::DRAIN_BIAS_W];
  assign f_desc_kind = (32'(f_desc) < MAX_DESC) ? desc_kind[f_desc] : 8'hFF;
  assign f_bias_kind = (32'(f_bias) < MAX_DESC) ? desc_kind[f_bias] : 8'hFF;
  assign innermost = (depth == 4'd0) ? 4'hF : open_levels[depth - 4'd1];

  // the decoder's checks of one word beyond its reserved bits (0: none fails)
  function automatic logic level_ok(input logic [3:0] level, input logic [7:0] open);
    level_ok = level == NO_LEVEL || (level < 4'd8 && open[level[2:0]]);
  endfunction
  function automatic logic [7:0] word_check(
      input logic [63:0] w, input logic known_op, input logic [63:0] mask,
      input logic fmt_known, input logic [7:0] open, input logic [3:0] loop_depth,
      input logic [3:0] inner, input logic [3:0] lvl, input logic [31:0] count,
      input logic [3:0] row_lvl,
      input logic [3:0] k_lvl, input logic [3:0] col_lvl, input logic [15:0] d,
      input logic [7:0] ref_kind, input logic [15:0] bias, input logic [7:0] bias_kind,
      input logic [31:0] descs);
    logic [7:0] op;
    logic refs_ok;
    op = w[63:56];
    refs_ok = 32'(d) < descs;
    word_check = 8'd0;
    if (!known_op) word_check = E_OPCODE;
    else if ((w & mask) != 64'd0) word_check = E_RESERVED_BITS;
    else if (op == bsisa_pkg::OP_CFG_ARRAY) begin
      if (w[bsisa_pkg::CFG_ARRAY_ROWS_LSB +: bsisa_pkg::CFG_ARRAY_ROWS_W] == 0
          || w[bsisa_pkg::CFG_ARRAY_COLS_LSB +: bsisa_pkg::CFG_ARRAY_COLS_W] == 0
          || w[bsisa_pkg::CFG_ARRAY_TILES_LSB +: bsisa_pkg::CFG_ARRAY_TILES_W] == 0)
        word_check = E_FIELD;
    end else if (op == bsisa_pkg::OP_CFG_FMT) begin
      if (!fmt_known || w[bsisa_pkg::CFG_FMT_SB_LSB +: bsisa_pkg::CFG_FMT_SB_W] == 0
          || w[bsisa_pkg::CFG_FMT_GROUP_SIZE_LSB +: bsisa_pkg::CFG_FMT_GROUP_SIZE_W] < 4
          || w[bsisa_pkg::CFG_FMT_GROUP_SIZE_LSB +: 2] != 2'd0)
        word_check = E_FIELD;
    end else if (op == bsisa_pkg::OP_CFG_KCHUNK) begin
      if (w[bsisa_pkg::CFG_KCHUNK_KC_LSB +: bsisa_pkg::CFG_KCHUNK_KC_W] == 0) word_check = E_FIELD;
    end else if (op == bsisa_pkg::OP_CFG_MBLOCK) begin
      if (w[bsisa_pkg::CFG_MBLOCK_ROWS_LSB +: bsisa_pkg::CFG_MBLOCK_ROWS_W] == 0)
        word_check = E_FIELD;
    end else if (op == bsisa_pkg::OP_LOOP || op == bsisa_pkg::OP_LOOP_DOWN) begin
      if (count == 0) word_check = E_FIELD;
      else if (open[lvl[2:0]]) word_check = E_LOOPS;
    end else if (op == bsisa_pkg::OP_ENDLOOP) begin
      if (loop_depth == 4'd0 || inner != lvl) word_check = E_LOOPS;
    end else if (op == bsisa_pkg::OP_LD_ACT) begin
      if (!level_ok(row_lvl, open) || !level_ok(k_lvl, open)) word_check = E_LEVEL;
      else if (!refs_ok || ref_kind != 8'(bsisa_pkg::DESC_KIND_ACT)) word_check = E_DESC_REF;
    end else if (op == bsisa_pkg::OP_LD_WGT) begin
      if (!level_ok(col_lvl, open) || !level_ok(k_lvl, open)) word_check = E_LEVEL;
      else if (!refs_ok || ref_kind != 8'(bsisa_pkg::DESC_KIND_QWEIGHT)) word_check = E_DESC_REF;
    end else if (op == bsisa_pkg::OP_DRAIN) begin
      if (bias != NO_BIAS && (32'(bias) >= descs || bias_kind != 8'(bsisa_pkg::DESC_KIND_BIAS)))
        word_check = E_DESC_REF;
    end else if (op == bsisa_pkg::OP_ST_OUT) begin
      if (!level_ok(row_lvl, open) || !level_ok(col_lvl, open)) word_check = E_LEVEL;
      else if (!refs_ok || ref_kind != 8'(bsisa_pkg::DESC_KIND_OUT)) word_check = E_DESC_REF;
    end
  endfunction
  logic [7:0] check_code;
  assign check_code = word_check(word, known, reserved_mask, d_fmt_known, open_mask, depth,
      innermost, f_lvl, f_count, f_row_lvl, f_k_lvl, f_col_lvl, f_desc, f_desc_kind, f_bias,
      f_bias_kind, n_desc);

  // ---- the registers of the run ---------------------------------------------------------
  logic [31:0] loops [8];        // L0..L7
  logic [31:0] loop_count [8];
  logic [31:0] loop_start [8];
  logic [7:0]  loop_down;        // per level: opened by loop.down (L counts down to 0)
  logic [7:0]  fmt, sb;
  logic [31:0] group_size, kchunk, block_rows;
  logic [SV_BITS-1:0] sv [4];
  // bookkeeping (machine.py's _Run): issue counts, buffer halves, per-tensor last accesses
  logic [31:0] issued_loads, issued_macs, issued_drains, issued_stores;
  localparam int REGIONS = bitmod_fmt_pkg::BUFFER_REGIONS;
  localparam logic [31:0] ALL_OF_K = 32'hFFFFFFFF;  // the K chunk tag of a block of all of K
  logic [31:0] buffer_misses [2];
  logic [31:0] buffer_hits [2];
  logic [31:0] last_reader [2*REGIONS];  // buffer b, region q at b * REGIONS + q
  logic [4:0]  newest_first [2];         // the regions of the buffer's newest block
  logic [5:0]  newest_regions [2];
  // per buffer and region: a block's tag starts there (head_regions: the regions it takes)
  logic        head_valid [2*REGIONS];
  logic [15:0] head_desc [2*REGIONS];
  logic [31:0] head_block [2*REGIONS];
  logic [31:0] head_chunk [2*REGIONS];
  logic [5:0]  head_regions [2*REGIONS];
  logic [31:0] last_store [MAX_STRINGS];
  logic [31:0] last_load [MAX_STRINGS];
  logic [31:0] out_store [2];
  logic        out_slot, pending_clear;
  // the stores' bitmap: per tensor (string) its first unit, units per column block (row units)
  // and in all, and the units stored so far
  logic [MAX_OUT_UNITS-1:0] stored;
  logic [MAX_STRINGS-1:0]   is_output;
  logic [31:0] out_base [MAX_STRINGS];
  logic [31:0] out_row_units [MAX_STRINGS];
  logic [31:0] out_units [MAX_STRINGS];
  logic [31:0] out_stored [MAX_STRINGS];
  logic [31:0] units_used;
  // the newest blocks, for the mac
  logic [31:0] act_base, act_stride, act_rows, act_k0;
  logic [31:0] w_base, w_stride, w_channels, w_k0, w_k, w_col0, w_meta_byte;
  // the accumulated block (for the drain) and the drained one (for the store)
  logic [31:0] acc_rows, acc_cols, acc_col0, drained_rows, drained_cols;

  // ---- the block of a load / store ------------------------------------------------------
  logic [31:0] outer, k0, k1, ka, chunk, dim0, dim1, start_index, valid, valid_k;
  logic [31:0] bits32, gb32, w_ka, w_valid, block_bytes, nbytes, capacity, region_bytes;
  logic        is_weight;
  logic [31:0] need_readers;
  // w(k) = ceil(k b / 8) + ceil(ceil(k / G) gb / 8) + 2: a channel row of a K chunk of k
  function automatic logic [31:0] row_bytes(input logic [31:0] k, input logic [31:0] b,
                                            input logic [31:0] gb, input logic [31:0] g);
    row_bytes = (k * b + 32'd7) / 32'd8 + (((k + g - 32'd1) / g) * gb + 32'd7) / 32'd8 + 32'd2;
  endfunction
  assign is_weight = opcode == bsisa_pkg::OP_LD_WGT;
  assign dim0 = desc_dim0[f_desc];
  assign dim1 = desc_dim1[f_desc];
  assign outer = is_weight ? ((f_col_lvl == NO_LEVEL) ? 0 : loops[f_col_lvl[2:0]]) : ((f_row_lvl == NO_LEVEL) ? 0 : loops[f_row_lvl[2:0]]);
  assign chunk = (f_k_lvl == NO_LEVEL) ? 0 : loops[f_k_lvl[2:0]];
  assign k0 = (f_k_lvl == NO_LEVEL) ? 0 : chunk * kchunk;
  assign k1 = (f_k_lvl == NO_LEVEL || k0 + kchunk > dim1) ? dim1 : k0 + kchunk;
  assign ka = (f_k_lvl == NO_LEVEL) ? dim1 : kchunk;
  assign start_index = outer * (is_weight ? 32'(COLUMNS) : block_rows);
  assign valid = is_weight ? ((dim0 - start_index < 32'(COLUMNS)) ? dim0 - start_index : 32'(COLUMNS)) : ((dim0 - start_index < block_rows) ? dim0 - start_index : block_rows);
  assign valid_k = k1 - k0;
  assign bits32 = {28'd0, probe_bits};
  assign gb32 = {24'd0, sb} + {30'd0, probe_index_bits} + ((probe_kind == 2'(bitmod_fmt_pkg::KIND_INT_ASYM)) ? bits32 : 32'd0);
  assign w_ka = row_bytes(ka, bits32, gb32, group_size);
  assign w_valid = row_bytes(valid_k, bits32, gb32, group_size);
  assign block_bytes = is_weight ? 32'(COLUMNS) * w_ka : 32'd2 * block_rows * ka;
  assign nbytes = is_weight ? valid * w_valid : 32'd2 * valid * valid_k;
  assign capacity = is_weight ? 32'(WEIGHT_BUFFER_BYTES) : 32'(ACT_BUFFER_BYTES);
  assign region_bytes = capacity / 32'(REGIONS);
  // r = min(REGIONS, ceil(B / region)); slot misses mod (REGIONS / r) starts at region s * r
  logic [31:0] regions_wide, block_regions, block_slots, miss_first, block_chunk;
  logic [31:0] block_first, block_base;
  logic [4:0]  hit_first;
  logic        hit;
  assign regions_wide = (region_bytes == 32'd0) ? 32'(REGIONS)
      : (block_bytes + region_bytes - 32'd1) / region_bytes;
  assign block_regions = (regions_wide > 32'(REGIONS)) ? 32'(REGIONS) : regions_wide;
  assign block_slots = 32'(REGIONS) / block_regions;
  assign miss_first = (buffer_misses[is_weight] % block_slots) * block_regions;
  assign block_chunk = (f_k_lvl == NO_LEVEL) ? ALL_OF_K : chunk;
  always_comb begin
    hit = 1'b0;
    hit_first = 5'd0;
    for (int q = REGIONS - 1; q >= 0; q--) begin
      if (head_valid[32'(is_weight) * REGIONS + q] && head_desc[32'(is_weight) * REGIONS + q] == f_desc
          && head_block[32'(is_weight) * REGIONS + q] == outer
          && head_chunk[32'(is_weight) * REGIONS + q] == block_chunk
          && 32'(head_regions[32'(is_weight) * REGIONS + q]) == block_regions) begin
        hit = 1'b1;
        hit_first = 5'(q);
      end
    end
  end
  assign block_first = hit ? 32'(hit_first) : miss_first;
  assign block_base = block_first * region_bytes;
  always_comb begin
    need_readers = 32'd0;
    for (int q = 0; q < REGIONS; q++)
      if (32'(q) >= miss_first && 32'(q) < miss_first + block_regions
          && last_reader[32'(is_weight) * REGIONS + q] > need_readers)
        need_readers = last_reader[32'(is_weight) * REGIONS + q];
  end

  // ---- execution --------------------------------------------------------------------------
  logic        target_full, execute;
  logic [3:0]  terms;
  logic [31:0] store_row0, store_col0, store_n;
  logic [63:0] load_cycles, store_cycles;
  logic [COLUMNS-1:0] bias_columns;
  assign terms = bitmod_arith_pkg::term_count(
      probe_min_terms, probe_sv, {sv[3], sv[2], sv[1], sv[0]});
  assign target_full = (opcode == bsisa_pkg::OP_LD_ACT || opcode == bsisa_pkg::OP_LD_WGT) ? ld_full && !hit
      : (opcode == bsisa_pkg::OP_MAC) ? pe_full
      : (opcode == bsisa_pkg::OP_DRAIN) ? dr_full
      : (opcode == bsisa_pkg::OP_ST_OUT) ? st_full : 1'b0;
  assign execute = running && !halted && !error && pc < n_instr && !target_full;
  assign store_row0 = ((f_row_lvl == NO_LEVEL) ? 0 : loops[f_row_lvl[2:0]]) * block_rows;
  assign store_col0 = ((f_col_lvl == NO_LEVEL) ? 0 : loops[f_col_lvl[2:0]]) * 32'(COLUMNS);
  assign store_n = desc_dim1[f_desc];
  assign running = phase == B_RUN;
  // a transfer of n bytes holds the channel ceil(n * DEN / NUM) cycles
  assign load_cycles = (64'(nbytes) * 64'(DRAM_DEN) + 64'(DRAM_NUM) - 64'd1) / 64'(DRAM_NUM);
  assign store_cycles = (64'(32'd2 * drained_rows * drained_cols) * 64'(DRAM_DEN)
      + 64'(DRAM_NUM) - 64'd1) / 64'(DRAM_NUM);
  for (genvar c = 0; c < COLUMNS; c++) begin : bias_mask
    assign bias_columns[c] = 32'(c) < acc_cols;
  end

  // the commands (field orders match bitmod_accel's unpacking)
  assign ld_payload = {
      is_weight,
      desc_base[f_desc] + (is_weight ? chunk * dim0 * w_ka + start_index * w_valid
                                     : 32'd2 * (start_index * dim1 + k0)),  // src
      is_weight ? nbytes : 32'd2 * dim1,                                   // src stride
      block_base,                                                          // dst
      is_weight ? nbytes : 32'd2 * ka,                                     // dst stride
      is_weight ? nbytes : 32'd2 * valid_k,                                // segment bytes
      is_weight ? 32'd1 : valid,                                           // segments
      load_cycles[31:0], need_readers, last_store[desc_name[f_desc]]};
  assign pe_payload = {
      issued_loads, issued_drains, (act_rows + 32'(ROWS) - 32'd1) / 32'(ROWS), w_k, group_size,
      terms, sb[3:0], pending_clear, act_base + 32'd2 * (w_k0 - act_k0), act_stride, act_rows,
      w_base, w_stride, w_meta_byte, w_stride - 32'd2, w_channels, probe_kind, probe_bits,
      probe_sv, probe_magnitudes, probe_index_bits,
      (probe_kind == 2'(bitmod_fmt_pkg::KIND_INT_ASYM)) ? probe_bits : 4'd0,
      sv[3], sv[2], sv[1], sv[0]};
  assign dr_payload = {  // the drain engine derives its sweeps from rows and channels
      issued_macs, out_store[issued_drains[0]], acc_rows, acc_cols, issued_drains[0],
      f_bias != NO_BIAS, desc_base[f_bias] + 32'd2 * acc_col0, bias_columns};
  assign st_payload = {
      issued_drains, last_load[desc_name[f_desc]],
      32'(out_slot) * 32'(MAX_BLOCK_ROWS) * 32'(COLUMNS) * 32'd2,         // src: the slot
      32'(COLUMNS) * 32'd2,                                                // src stride
      desc_base[f_desc] + 32'd2 * (store_row0 * store_n + store_col0),     // dst
      32'd2 * store_n, 32'd2 * drained_cols, drained_rows, store_cycles[31:0]};

  // st.out: its units (row units from MR * L_row, one column block), checked and set at issue
  logic [31:0] st_tensor, st_unit0, st_units, st_col_unit, st_first;
  logic [MAX_OUT_UNITS-1:0] st_mask;
  logic        st_outside, st_twice;
  logic [MAX_STRINGS-1:0] unstored;
  assign st_tensor = desc_name[f_desc];
  assign st_unit0 = store_row0 / 32'(ROWS);
  assign st_units = (drained_rows + 32'(ROWS) - 32'd1) / 32'(ROWS);
  assign st_col_unit = (f_col_lvl == NO_LEVEL) ? 32'd0 : loops[f_col_lvl[2:0]];
  assign st_first = out_base[st_tensor] + st_col_unit * out_row_units[st_tensor] + st_unit0;
  assign st_outside = st_unit0 + st_units > out_row_units[st_tensor]
      || (st_col_unit + 32'd1) * out_row_units[st_tensor] > out_units[st_tensor];
  assign st_mask = ((MAX_OUT_UNITS'(1) << st_units) - MAX_OUT_UNITS'(1)) << st_first;
  assign st_twice = (stored & st_mask) != '0;
  for (genvar t = 0; t < MAX_STRINGS; t++) begin : store_counts
    assign unstored[t] = is_output[t] && out_stored[t] != out_units[t];
  end

  // mac: the group accumulator's bound, G * max(TERM_SUM[fmt], max |SV|) <= GROUP_TERM_LIMIT
  // (bitmod_fmt_pkg, from runtime/arch/rules.py): the SV register's entries are weights of
  // magnitude |SV[i]| for a format that reads it (an unset entry is 0, below every TERM_SUM)
  function automatic logic [16:0] sv_magnitude(input logic [15:0] v);
    sv_magnitude = v[15] ? 17'd0 - {v[15], v} : {1'b0, v};
  endfunction
  logic [16:0] sv_largest, sv01, sv23;
  logic [31:0] fmt_term_sum, term_bound;
  logic        accumulator_ok;
  assign sv01 = (sv_magnitude(sv[0]) > sv_magnitude(sv[1])) ? sv_magnitude(sv[0]) : sv_magnitude(sv[1]);
  assign sv23 = (sv_magnitude(sv[2]) > sv_magnitude(sv[3])) ? sv_magnitude(sv[2]) : sv_magnitude(sv[3]);
  assign sv_largest = (sv01 > sv23) ? sv01 : sv23;
  assign fmt_term_sum = (32'(fmt) < bitmod_fmt_pkg::N_FORMATS)
      ? 32'(bitmod_fmt_pkg::TERM_SUM[fmt * bitmod_fmt_pkg::TERM_SUM_W +: bitmod_fmt_pkg::TERM_SUM_W])
      : 32'd0;
  assign term_bound = (probe_sv && 32'(sv_largest) > fmt_term_sum) ? 32'(sv_largest) : fmt_term_sum;
  assign accumulator_ok = 64'(group_size) * 64'(term_bound) <= 64'(bitmod_fmt_pkg::GROUP_TERM_LIMIT);

  // what the machine refuses at run time (a subset of runtime/emulator/machine.py's checks)
  function automatic logic [7:0] run_time_check(
      input logic [63:0] w, input logic [31:0] start, input logic [31:0] rows_or_channels,
      input logic [31:0] first_k, input logic [31:0] k, input logic [31:0] bytes,
      input logic [31:0] room, input logic format_differs);
    logic [7:0] op;
    op = w[63:56];
    run_time_check = 8'd0;
    if (op == bsisa_pkg::OP_CFG_ARRAY) begin
      if (32'(w[bsisa_pkg::CFG_ARRAY_ROWS_LSB +: bsisa_pkg::CFG_ARRAY_ROWS_W]) != ROWS
          || 32'(w[bsisa_pkg::CFG_ARRAY_COLS_LSB +: bsisa_pkg::CFG_ARRAY_COLS_W]) != COLS
          || 32'(w[bsisa_pkg::CFG_ARRAY_TILES_LSB +: bsisa_pkg::CFG_ARRAY_TILES_W]) != TILES)
        run_time_check = E_GEOMETRY;
    end else if (op == bsisa_pkg::OP_CFG_MBLOCK) begin
      if (32'(w[bsisa_pkg::CFG_MBLOCK_ROWS_LSB +: bsisa_pkg::CFG_MBLOCK_ROWS_W]) % ROWS != 0
          || 32'(w[bsisa_pkg::CFG_MBLOCK_ROWS_LSB +: bsisa_pkg::CFG_MBLOCK_ROWS_W]) > MAX_BLOCK_ROWS)
        run_time_check = E_MBLOCK;
    end else if (op == bsisa_pkg::OP_LD_ACT || op == bsisa_pkg::OP_LD_WGT) begin
      if (start >= rows_or_channels || first_k >= k) run_time_check = E_OUTSIDE;
      else if (bytes > room) run_time_check = E_OVERFLOW;
      else if (format_differs) run_time_check = E_FORMAT;
    end
  endfunction
  logic [7:0] block_check, run_check;
  assign block_check = run_time_check(word, start_index, dim0, k0, dim1, block_bytes, capacity,
      is_weight && (desc_fmt[f_desc] != fmt || desc_sb[f_desc] != sb
                    || desc_group[f_desc] != group_size));
  assign run_check = (block_check != 8'd0) ? block_check
      : (opcode == bsisa_pkg::OP_MAC && !accumulator_ok) ? E_ACCUMULATOR
      : (opcode == bsisa_pkg::OP_ST_OUT && st_outside) ? E_OUTSIDE
      : (opcode == bsisa_pkg::OP_ST_OUT && st_twice) ? E_STORED_TWICE
      : (opcode == bsisa_pkg::OP_HALT && unstored != '0) ? E_NOT_STORED : 8'd0;
  assign ld_issue = execute && run_check == 8'd0 && !hit
      && (opcode == bsisa_pkg::OP_LD_ACT || opcode == bsisa_pkg::OP_LD_WGT);
  assign pe_issue = execute && run_check == 8'd0 && opcode == bsisa_pkg::OP_MAC;
  assign dr_issue = execute && run_check == 8'd0 && opcode == bsisa_pkg::OP_DRAIN;
  assign st_issue = execute && run_check == 8'd0 && opcode == bsisa_pkg::OP_ST_OUT;

  always_ff @(posedge clk) begin
    if (rst) begin
      phase <= B_HEADER;
      error <= 1'b0;
      error_code <= 8'd0;
      error_where <= 32'd0;
      halted <= 1'b0;
      boot_cycles <= 32'd0;
      pc <= 32'd0;
      depth <= 4'd0;
      open_mask <= 8'd0;
      loop_down <= 8'd0;
      {issued_loads, issued_macs, issued_drains, issued_stores} <= '0;
      for (int b = 0; b < 2; b++) begin
        buffer_misses[b] <= 32'd0;
        buffer_hits[b] <= 32'd0;
        newest_first[b] <= 5'd0;
        newest_regions[b] <= 6'd0;
      end
      for (int i = 0; i < 2 * REGIONS; i++) begin
        last_reader[i] <= 32'd0;
        head_valid[i] <= 1'b0;
        head_desc[i] <= 16'd0;
        head_regions[i] <= 6'd0;
      end
      for (int i = 0; i < MAX_STRINGS; i++) begin
        last_store[i] <= 32'd0;
        last_load[i] <= 32'd0;
      end
      out_store[0] <= 32'd0;
      out_store[1] <= 32'd0;
      out_slot <= 1'b0;
      pending_clear <= 1'b0;
      stored <= '0;
      is_output <= '0;
      units_used <= 32'd0;
      drained_rows <= 32'd0;
      drained_cols <= 32'd0;
      block_rows <= 32'(ROWS);
      kchunk <= 32'd1;
      group_size <= 32'd4;
      fmt <= 8'd0;
      sb <= 8'd1;
      for (int i = 0; i < 4; i++) sv[i] <= '0;
    end else begin
      if (phase != B_RUN && phase != B_STOP) boot_cycles <= boot_cycles + 32'd1;
      case (phase)
        B_HEADER: begin
          n_strings <= u32(bsisa_pkg::HEADER_N_STRINGS_OFFSET);
          n_desc <= u32(bsisa_pkg::HEADER_N_DESC_OFFSET);
          n_instr <= u32(bsisa_pkg::HEADER_N_INSTR_OFFSET);
          header_crc <= u32(bsisa_pkg::HEADER_CRC_OFFSET);
          position <= 32'(bsisa_pkg::HEADER_BYTES);
          index <= 32'd0;
          if (image_length < 32'(bsisa_pkg::HEADER_BYTES)) fail(E_TRUNCATED, image_length);
          else if (u32(bsisa_pkg::HEADER_MAGIC_OFFSET) != bsisa_pkg::MAGIC) fail(E_MAGIC, 0);
          else if (32'(u16(bsisa_pkg::HEADER_VERSION_OFFSET)) != bsisa_pkg::VERSION)
            fail(E_VERSION, bsisa_pkg::HEADER_VERSION_OFFSET);
          else if (u16(bsisa_pkg::HEADER_RESERVED_OFFSET) != 16'd0)
            fail(E_RESERVED_HEADER, bsisa_pkg::HEADER_RESERVED_OFFSET);
          else phase <= B_STRINGS;
        end
        B_STRINGS: begin
          if (index == n_strings) begin
            desc_offset <= position;
            code_offset <= position + 32'(bsisa_pkg::DESCRIPTOR_BYTES) * n_desc;
            phase <= B_SIZES;
          end else if (position + 32'd2 > image_length) fail(E_TRUNCATED, image_length);
          else if (position + 32'd2 + 32'(u16(position)) > image_length)
            fail(E_TRUNCATED, image_length);
          else begin
            position <= position + 32'd2 + 32'(u16(position));
            index <= index + 32'd1;
          end
        end
        B_SIZES: begin
          if (code_offset + 32'(bsisa_pkg::INSTRUCTION_BYTES) * n_instr > image_length)
            fail(E_TRUNCATED, image_length);
          else if (code_offset + 32'(bsisa_pkg::INSTRUCTION_BYTES) * n_instr < image_length)
            fail(E_TRAILING, code_offset + 32'(bsisa_pkg::INSTRUCTION_BYTES) * n_instr);
          else if (n_desc > MAX_DESC || n_instr > MAX_INSTR || n_strings > MAX_STRINGS)
            fail(E_CAPACITY, 32'(bsisa_pkg::HEADER_N_STRINGS_OFFSET));
          else begin
            position <= 32'(bsisa_pkg::HEADER_BYTES);
            crc <= 32'hFFFFFFFF;
            phase <= B_CRC;
          end
        end
        B_CRC: begin
          if (position == image_length) begin
            if (~crc != header_crc) fail(E_CRC, bsisa_pkg::HEADER_CRC_OFFSET);
            else begin
              position <= desc_offset;
              index <= 32'd0;
              phase <= B_DESC;
            end
          end else begin
            crc <= crc_step(crc, image[position]);
            position <= position + 32'd1;
          end
        end
        B_DESC: begin
          if (index == n_desc) begin
            index <= 32'd0;
            phase <= B_CODE;
          end else if (!d_ok) fail(E_DESCRIPTOR, position);
          else if (d_kind == 8'(bsisa_pkg::DESC_KIND_OUT) && !is_output[d_name]
                   && units_used + d_units > 32'(MAX_OUT_UNITS))
            fail(E_CAPACITY, position);
          else begin
            if (d_kind == 8'(bsisa_pkg::DESC_KIND_OUT) && !is_output[d_name]) begin
              // the tensor's first out descriptor places its store bitmap
              is_output[d_name] <= 1'b1;
              out_base[d_name] <= units_used;
              out_row_units[d_name] <= d_row_units;
              out_units[d_name] <= d_units;
              out_stored[d_name] <= 32'd0;
              units_used <= units_used + d_units;
            end
            desc_name[index] <= d_name;
            desc_kind[index] <= d_kind;
            desc_fmt[index] <= d_fmt;
            desc_sb[index] <= d_sb;
            desc_dim0[index] <= d_dim0;
            desc_dim1[index] <= d_dim1;
            desc_group[index] <= d_group;
            position <= position + 32'(bsisa_pkg::DESCRIPTOR_BYTES);
            index <= index + 32'd1;
          end
        end
        B_CODE: begin
          if (index == n_instr) begin
            if (depth != 4'd0) fail_at(E_LOOPS, n_instr);
            else phase <= B_RUN;
          end else if (check_code != 8'd0) fail_at(check_code, index);
          else begin
            code[index] <= word;
            if (opcode == bsisa_pkg::OP_LOOP || opcode == bsisa_pkg::OP_LOOP_DOWN) begin
              open_levels[depth] <= f_lvl;
              open_mask[f_lvl[2:0]] <= 1'b1;
              depth <= depth + 4'd1;
            end else if (opcode == bsisa_pkg::OP_ENDLOOP) begin
              open_mask[f_lvl[2:0]] <= 1'b0;
              depth <= depth - 4'd1;
            end
            position <= position + 32'(bsisa_pkg::INSTRUCTION_BYTES);
            index <= index + 32'd1;
          end
        end
        B_RUN: begin
          if (act_error) fail_at(E_ACTIVATION, pc);
          else if (!halted && !error && pc >= n_instr) fail_at(E_NO_HALT, n_instr);
          else if (execute && run_check != 8'd0) fail_at(run_check, pc);
          else if (execute) run_instruction();
        end
        default: ;
      endcase
    end
  end

  task automatic fail(input logic [7:0] why, input logic [31:0] where);
    error <= 1'b1;
    error_code <= why;
    error_where <= where;
    phase <= B_STOP;
  endtask
  // run-time and instruction errors name the instruction index
  task automatic fail_at(input logic [7:0] why, input logic [31:0] at);
    fail(why, at);
  endtask

  task automatic run_instruction;
    pc <= pc + 32'd1;
    case (opcode)
      bsisa_pkg::OP_HALT: begin
        halted <= 1'b1;
        pc <= pc;
      end
      bsisa_pkg::OP_CFG_ARRAY: begin
        block_rows <= 32'(ROWS);
        forget_blocks();
      end
      bsisa_pkg::OP_CFG_SV: sv[word[bsisa_pkg::CFG_SV_SLOT_LSB +: bsisa_pkg::CFG_SV_SLOT_W]] <= word[bsisa_pkg::CFG_SV_VALUE_LSB +: bsisa_pkg::CFG_SV_VALUE_W];
      bsisa_pkg::OP_CFG_FMT: begin
        fmt <= word[bsisa_pkg::CFG_FMT_FMT_LSB +: bsisa_pkg::CFG_FMT_FMT_W];
        sb <= 8'(word[bsisa_pkg::CFG_FMT_SB_LSB +: bsisa_pkg::CFG_FMT_SB_W]);
        group_size <= 32'(word[bsisa_pkg::CFG_FMT_GROUP_SIZE_LSB +: bsisa_pkg::CFG_FMT_GROUP_SIZE_W]);
        forget_blocks();
      end
      bsisa_pkg::OP_CFG_KCHUNK: begin
        kchunk <= word[bsisa_pkg::CFG_KCHUNK_KC_LSB +: bsisa_pkg::CFG_KCHUNK_KC_W];
        forget_blocks();
      end
      bsisa_pkg::OP_CFG_MBLOCK: begin
        block_rows <= 32'(word[bsisa_pkg::CFG_MBLOCK_ROWS_LSB +: bsisa_pkg::CFG_MBLOCK_ROWS_W]);
        forget_blocks();
      end
      bsisa_pkg::OP_LOOP, bsisa_pkg::OP_LOOP_DOWN: begin  // L = 0 (loop) or count - 1 (down)
        loops[f_lvl[2:0]] <= (opcode == bsisa_pkg::OP_LOOP_DOWN) ? f_count - 32'd1 : 32'd0;
        loop_count[f_lvl[2:0]] <= f_count;
        loop_start[f_lvl[2:0]] <= pc;
        loop_down[f_lvl[2:0]] <= opcode == bsisa_pkg::OP_LOOP_DOWN;
      end
      bsisa_pkg::OP_ENDLOOP: begin  // the next index, or fall through after the last one
        if (loop_down[f_lvl[2:0]]) begin
          if (loops[f_lvl[2:0]] != 32'd0) begin
            loops[f_lvl[2:0]] <= loops[f_lvl[2:0]] - 32'd1;
            pc <= loop_start[f_lvl[2:0]] + 32'd1;
          end
        end else if (loops[f_lvl[2:0]] + 32'd1 < loop_count[f_lvl[2:0]]) begin
          loops[f_lvl[2:0]] <= loops[f_lvl[2:0]] + 32'd1;
          pc <= loop_start[f_lvl[2:0]] + 32'd1;
        end
      end
      bsisa_pkg::OP_ACC_CLR: pending_clear <= 1'b1;
      bsisa_pkg::OP_LD_ACT, bsisa_pkg::OP_LD_WGT: begin
        if (hit) buffer_hits[is_weight] <= buffer_hits[is_weight] + 32'd1;
        else begin
          issued_loads <= issued_loads + 32'd1;
          last_load[desc_name[f_desc]] <= issued_loads + 32'd1;
          buffer_misses[is_weight] <= buffer_misses[is_weight] + 32'd1;
          for (int q = 0; q < REGIONS; q++)  // the blocks the new one overlaps
            if (32'(q) < miss_first + block_regions
                && 32'(q) + 32'(head_regions[32'(is_weight) * REGIONS + q]) > miss_first)
              head_valid[32'(is_weight) * REGIONS + q] <= 1'b0;
          head_valid[32'(is_weight) * REGIONS + miss_first] <= 1'b1;
          head_desc[32'(is_weight) * REGIONS + miss_first] <= f_desc;
          head_block[32'(is_weight) * REGIONS + miss_first] <= outer;
          head_chunk[32'(is_weight) * REGIONS + miss_first] <= block_chunk;
          head_regions[32'(is_weight) * REGIONS + miss_first] <= 6'(block_regions);
        end
        newest_first[is_weight] <= 5'(block_first);
        newest_regions[is_weight] <= 6'(block_regions);
        if (is_weight) begin
          w_base <= block_base;
          w_stride <= w_valid;
          w_channels <= valid;
          w_k0 <= k0;
          w_k <= valid_k;
          w_col0 <= start_index;
          w_meta_byte <= (valid_k * bits32 + 32'd7) / 32'd8;
        end else begin
          act_base <= block_base;
          act_stride <= 32'd2 * ka;
          act_rows <= valid;
          act_k0 <= k0;
        end
      end
      bsisa_pkg::OP_MAC: begin
        issued_macs <= issued_macs + 32'd1;
        pending_clear <= 1'b0;
        for (int b = 0; b < 2; b++)
          for (int q = 0; q < REGIONS; q++)
            if (6'(q) >= 6'(newest_first[b]) && 6'(q) < 6'(newest_first[b]) + newest_regions[b])
              last_reader[b * REGIONS + q] <= issued_macs + 32'd1;
        acc_rows <= act_rows;
        acc_cols <= w_channels;
        acc_col0 <= w_col0;
      end
      bsisa_pkg::OP_DRAIN: begin
        issued_drains <= issued_drains + 32'd1;
        out_slot <= issued_drains[0];
        drained_rows <= acc_rows;
        drained_cols <= acc_cols;
      end
      bsisa_pkg::OP_ST_OUT: begin
        issued_stores <= issued_stores + 32'd1;
        out_store[out_slot] <= issued_stores + 32'd1;
        stored <= stored | st_mask;
        out_stored[st_tensor] <= out_stored[st_tensor] + st_units;
        last_store[desc_name[f_desc]] <= issued_stores + 32'd1;
        for (int q = 0; q < REGIONS; q++)  // the act blocks of the tensor it overwrites
          if (desc_name[head_desc[q]] == desc_name[f_desc]) head_valid[q] <= 1'b0;
      end
      default: ;
    endcase
  endtask
  task automatic forget_blocks;
    for (int i = 0; i < 2 * REGIONS; i++) head_valid[i] <= 1'b0;
  endtask
endmodule
