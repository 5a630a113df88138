// The lane spread of the row groups (docs/rtl.md, "The PE engine"): tile t gets the W bits of
// tile t mod 2^lanes_log (its lane's), log2(TILES) levels of 2:1 multiplexers on half the
// tiles each: level b (taken when lanes_log <= b) hands tile t with bit b set the data of
// tile t - 2^b.
module bitmod_lane_spread #(
  parameter int TILES = 1,
  parameter int W = 1,
  localparam int LEVELS = $clog2(TILES)
) (
  input  logic [TILES*W-1:0] in,
  input  logic [3:0]         lanes_log,
  output logic [TILES*W-1:0] out
);
  // level b's input at (b + 1) * TILES * W (split: no circular logic for Verilator)
  logic [(LEVELS+1)*TILES*W-1:0] stage /* verilator split_var */;
  assign stage[LEVELS*TILES*W +: TILES*W] = in;
  for (genvar b = 0; b < LEVELS; b++) begin : levels
    for (genvar t = 0; t < TILES; t++) begin : tiles
      if ((t >> b) % 2 == 1) begin : upper
        assign stage[b*TILES*W + t*W +: W] = (32'(lanes_log) <= b)
            ? stage[(b+1)*TILES*W + (t - (1 << b))*W +: W] : stage[(b+1)*TILES*W + t*W +: W];
      end else begin : lower
        assign stage[b*TILES*W + t*W +: W] = stage[(b+1)*TILES*W + t*W +: W];
      end
    end
  end
  assign out = stage[0 +: TILES*W];
endmodule

// The PE engine: runs one mac at a time on the tile array (docs/rtl.md, "The PE engine").
//
// Row groups: a weight block of `weight_channels` valid channels needs ceil(channels / COLS)
// tiles; the engine groups the tiles by Wg, the smallest power of two at least that (tile t is
// lane t mod Wg of group t / Wg), into S groups, the largest power of two with S <= ROW_GROUPS
// and S * Wg <= TILES (bitmod_arith_pkg::row_groups; tiles t >= S * Wg idle). Every group gets
// the same weight terms (tile t those of the channels tile t mod Wg holds without groups) and
// its own pass of ROWS activation rows: a mac of `passes` passes runs ceil(passes / S) sweeps,
// group j computing pass i * S + j in sweep i (idle if that is past the last pass). The
// activation port delivers the S * ROWS rows of a sweep at once (ROW_SETS row sets of ROWS
// rows).
//
// A mac of `sweeps` sweeps of ROWS rows (per group) over `k` elements of K: for every sweep,
// every group (G elements; the last one shorter when G does not divide k), every step of 4
// elements and every term, one issue cycle: it reads the step's activations and codes (and the
// group's metadata at its first step) from the buffers' registered ports and presents the term
// to the tiles (bitmod_tile's F stage) in the next cycle. Before every group but the mac's
// first the engine inserts max(0, SB + ROWS - L) empty cycles (L: the group's issue cycles), so
// group ends are at least SB + ROWS apart (the dequantizers and the column accumulators are
// free by then). After the last issue cycle the mac stays busy PIPE + SB + ROWS cycles (the
// tiles' pipeline, the last group's dequantization and its column accumulation): a mac's
// duration is MacTiming.bit_serial_terms(...).cycles(sweeps, k) (runtime/arch/schedule.py).
// The column accumulators write the last group's C rows one a cycle, row r in the cycle in
// which tail == ROWS + 1 - r (the last one cycle before the mac's last): `rows_final` marks
// row 0's, so a drain that starts in the next cycle, ROWS cycles before the mac ends, reads
// every C row (row d in its cycle d) in the cycle after its last write (docs/rtl.md, "Timing").
//
// C rows: in sweep i every active tile accumulates into its C rows i * ROWS + r (its own
// sweep's rows, whichever pass its group runs), so a drain reading C row i * ROWS + r of every
// tile in its cycle i * ROWS + r stays ahead of the next block's mac whatever the two blocks'
// S (docs/rtl.md, "The drain engine").
module bitmod_pe_engine #(
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int TILES = 1,
  parameter int ROW_GROUPS = 4,  // a power of two (HardwareConfig.row_groups)
  parameter int MAX_ROWS = 128,
  parameter int PIPE = 4,  // bitmod_tile's F, E, M and A stages
  localparam int COLUMNS = COLS * TILES,
  // the row sets the activation port delivers: the largest S any block can have
  localparam int TILE_POW2 = 1 << ($clog2(TILES + 1) - 1),
  localparam int ROW_SETS = (ROW_GROUPS < TILE_POW2) ? ROW_GROUPS : TILE_POW2,
  localparam int SET_W = (ROW_SETS > 1) ? $clog2(ROW_SETS) : 1,
  localparam int SB_MAX = bitmod_arith_pkg::SB_MAX,
  localparam int SV_BITS = bitmod_arith_pkg::SV_BITS,
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1
) (
  input  logic                   clk,
  input  logic                   rst,
  input  logic                   start,          // from bitmod_engine: the mac starts
  output logic                   last,           // its last busy cycle
  output logic                   rows_final,     // the last group writes C row 0 (ROWS before last)
  output logic                   issuing,        // a term issue cycle (for the cycle causes)
  // the mac (constant while it runs)
  input  logic [31:0]            passes,         // ceil(act_rows / ROWS)
  input  logic [31:0]            k_valid,        // K elements of the weight block
  input  logic [31:0]            group_size,
  input  logic [3:0]             terms,
  input  logic [3:0]             sb,
  input  logic                   clear,          // the first mac after acc.clr
  input  logic [31:0]            act_address,    // act block: first byte of its mac's K range
  input  logic [31:0]            act_row_stride,
  input  logic [31:0]            act_rows,       // valid rows
  input  logic [31:0]            weight_address,
  input  logic [31:0]            weight_stride,
  input  logic [31:0]            weight_meta_byte,
  input  logic [31:0]            weight_scale_byte,
  input  logic [31:0]            weight_channels,  // valid channels
  input  logic [1:0]             kind,
  input  logic [3:0]             bits,
  input  logic                   sv_enable,
  input  logic [39:0]            magnitudes,
  input  logic [1:0]             index_bits,
  input  logic [3:0]             zero_bits,
  input  logic [4*SV_BITS-1:0]   sv_regs,
  // the buffers' read ports (bitmod_memory)
  output logic                   act_fetch,
  output logic [31:0]            act_fetch_address,  // the sweep's first row
  output logic [ROW_SETS*ROWS-1:0] act_row_valid,    // row q: row set q / ROWS (group)
  output logic [3:0]             act_lane_valid,
  input  logic [ROW_SETS*ROWS*64-1:0] act_data,
  output logic                   code_fetch,
  output logic [31:0]            code_bit,
  input  logic [COLUMNS*32-1:0]  codes,
  output logic                   meta_fetch,
  output logic [31:0]            meta_bit,
  input  logic [COLUMNS*32-1:0]  meta,
  output logic                   scale_fetch,
  output logic                   act_error,      // an Inf/NaN activation inside the block
  // the drain (bitmod_drain_engine): C rows through the tiles' drain units, by channel of the
  // drained block (tile t takes those of its lane, t mod 2^drain_lanes)
  input  logic [ROW_W-1:0]       drain_row,
  input  logic [3:0]             drain_lanes,    // log2 Wg of the drained block
  input  logic [COLUMNS*16-1:0]  drain_scale,
  input  logic [COLUMNS*16-1:0]  drain_bias,
  input  logic                   drain_has_bias,
  output logic [COLUMNS*16-1:0]  drain_y         // by tile: tile t's COLS drain units
);
  // the row groups of this mac's weight block: log2 S, log2 Wg; its sweeps
  logic [3:0]  groups_log, lanes_log;
  logic [31:0] sweeps;
  assign {groups_log, lanes_log} = bitmod_arith_pkg::row_groups(
      weight_channels, 32'(COLS), 32'(TILES), 32'(ROW_GROUPS));
  assign sweeps = (passes + (32'd1 << groups_log) - 32'd1) >> groups_log;

  // the sequencer: sweep, group, step and term of this issue cycle (all 0 when no mac runs)
  logic        running, tailing;
  logic [31:0] sweep, group, step, term_index, stall, tail;
  logic [31:0] group_k0, group_len, group_steps, k_step, first_row;
  logic        step_last, group_last, sweep_last, mac_last;
  logic [31:0] next_len, next_cycles, spacing;
  // the F stage (with the buffers' registered data)
  logic                  f_valid, f_load, f_last, f_replace, f_check;
  logic [3:0]            f_term;
  logic [ROW_W-1:0]      f_crow;
  logic [ROW_SETS-1:0]   f_group_valid;  // group j runs a pass in this sweep
  logic [3:0]            f_lanes;

  assign group_k0 = group * group_size;
  assign group_len = (k_valid - group_k0 < group_size) ? k_valid - group_k0 : group_size;
  assign group_steps = (group_len + 32'd3) / 32'd4;
  assign k_step = group_k0 + 32'd4 * step;
  assign first_row = (sweep << groups_log) * 32'(ROWS);  // of group 0's pass, i * S * ROWS
  assign step_last = term_index == {28'd0, terms} - 32'd1;
  assign group_last = step_last && step == group_steps - 32'd1;
  assign sweep_last = group_last && group_k0 + group_size >= k_valid;  // the sweep's last group
  assign mac_last = sweep_last && sweep == sweeps - 32'd1;
  assign issuing = (start || running) && !tailing && stall == 32'd0;
  assign last = tailing && tail == 32'd1;
  assign rows_final = tailing && tail == 32'(ROWS) + 32'd1;
  // the next group (of this sweep, or the first of the next) and the empty cycles before it
  assign next_len = sweep_last ? ((k_valid < group_size) ? k_valid : group_size)
      : ((k_valid - group_k0 - group_size < group_size) ? k_valid - group_k0 - group_size
                                                         : group_size);
  assign next_cycles = (next_len + 32'd3) / 32'd4 * {28'd0, terms};
  assign spacing = {28'd0, sb} + 32'(ROWS);

  // the buffer reads of this issue cycle: the sweep's S * ROWS rows (row set j: group j's pass)
  assign act_fetch = issuing && term_index == 32'd0;
  assign act_fetch_address = act_address + first_row * act_row_stride + 32'd2 * k_step;
  for (genvar q = 0; q < ROW_SETS * ROWS; q++) begin : row_valid
    assign act_row_valid[q] = 32'(q) < (32'(ROWS) << groups_log) && first_row + 32'(q) < act_rows;
  end
  for (genvar lane = 0; lane < 4; lane++) begin : lane_valid
    assign act_lane_valid[lane] = k_step + 32'(lane) < k_valid;
  end
  assign code_fetch = act_fetch;
  assign code_bit = k_step * {28'd0, bits};
  assign meta_fetch = act_fetch && step == 32'd0;
  assign meta_bit = group * ({28'd0, sb} + {30'd0, index_bits} + {28'd0, zero_bits});
  assign scale_fetch = start;

  always_ff @(posedge clk) begin
    if (rst) begin
      running <= 1'b0;
      tailing <= 1'b0;
      {sweep, group, step, term_index, stall} <= '0;
      f_valid <= 1'b0;
      f_check <= 1'b0;
    end else begin
      f_valid <= issuing;
      f_check <= act_fetch;
      f_load <= term_index == 32'd0;
      f_term <= term_index[3:0];
      f_last <= group_last;
      f_crow <= ROW_W'(sweep * 32'(ROWS));
      f_replace <= clear && group == 32'd0;
      f_lanes <= act_lane_valid;
      for (int j = 0; j < ROW_SETS; j++) f_group_valid[j] <= act_row_valid[j * ROWS];
      if (start) running <= 1'b1;
      if (issuing) begin
        term_index <= step_last ? 32'd0 : term_index + 32'd1;
        if (step_last) step <= group_last ? 32'd0 : step + 32'd1;
        if (group_last) begin
          group <= sweep_last ? 32'd0 : group + 32'd1;
          if (sweep_last) sweep <= mac_last ? 32'd0 : sweep + 32'd1;
          if (mac_last) begin
            tailing <= 1'b1;
            tail <= 32'(PIPE) + {28'd0, sb} + 32'(ROWS);
          end else begin
            stall <= (next_cycles < spacing) ? spacing - next_cycles : 32'd0;
          end
        end
      end else if (running && !tailing) begin
        stall <= stall - 32'd1;
      end
      if (tailing) begin
        tail <= tail - 32'd1;
        if (tail == 32'd1) begin
          running <= 1'b0;
          tailing <= 1'b0;
        end
      end
    end
  end

  // the F stage's per-column fields, by channel of the block (lanes inside K and the channel,
  // the group's metadata), then spread to the tiles: tile t gets its lane's, t mod Wg
  logic [COLUMNS*33-1:0] by_channel, by_tile;  // per column: {inside the block, meta word}
  logic [COLUMNS*32-1:0] tile_codes;
  logic [COLUMNS*4-1:0]  f_lane_valid;
  logic [COLUMNS*8-1:0]  f_zero;
  logic [COLUMNS*2-1:0]  f_sv_index;
  logic [COLUMNS*SB_MAX-1:0] f_scale;
  for (genvar c = 0; c < COLUMNS; c++) begin : channels
    assign by_channel[33*c +: 33] = {32'(c) < weight_channels, meta[32*c +: 32]};
  end
  bitmod_lane_spread #(.TILES(TILES), .W(33 * COLS)) spread_meta (
      .in(by_channel), .lanes_log(lanes_log), .out(by_tile));
  bitmod_lane_spread #(.TILES(TILES), .W(32 * COLS)) spread_codes (
      .in(codes), .lanes_log(lanes_log), .out(tile_codes));
  for (genvar c = 0; c < COLUMNS; c++) begin : fields
    logic [31:0] word;
    assign word = by_tile[33*c +: 32];
    assign f_lane_valid[4*c +: 4] = by_tile[33*c + 32] ? f_lanes : 4'd0;
    assign f_scale[SB_MAX*c +: SB_MAX] = SB_MAX'(word & ((32'd1 << sb) - 32'd1));
    assign f_sv_index[2*c +: 2] = 2'((word >> sb) & ((32'd1 << index_bits) - 32'd1));
    assign f_zero[8*c +: 8] = 8'((word >> (sb + index_bits)) & ((32'd1 << zero_bits) - 32'd1));
  end

  // an activation with an all-ones exponent: the PE has no Inf/NaN (the rows of no active
  // group's pass, and those outside the block, are 0)
  logic [ROW_SETS*ROWS*4-1:0] special;
  for (genvar i = 0; i < ROW_SETS * ROWS * 4; i++) begin : inf_check
    assign special[i] = act_data[16*i + 10 +: 5] == 5'h1F;
  end
  assign act_error = f_check && |special;

  // the drain units' scales and biases, spread by the drained block's lanes
  logic [COLUMNS*32-1:0] drain_by_channel, drain_by_tile;  // per column: {bias, scale}
  logic [COLUMNS*16-1:0] tile_scale, tile_bias;
  for (genvar c = 0; c < COLUMNS; c++) begin : drain_channels
    assign drain_by_channel[32*c +: 32] = {drain_bias[16*c +: 16], drain_scale[16*c +: 16]};
    assign tile_scale[16*c +: 16] = drain_by_tile[32*c +: 16];
    assign tile_bias[16*c +: 16] = drain_by_tile[32*c + 16 +: 16];
  end
  bitmod_lane_spread #(.TILES(TILES), .W(32 * COLS)) spread_drain (
      .in(drain_by_channel), .lanes_log(drain_lanes), .out(drain_by_tile));

  for (genvar t = 0; t < TILES; t++) begin : tiles
    // group t / Wg, active if that is below S and its pass is in the block
    logic [31:0]      tile_group;
    logic [SET_W-1:0] tile_set;  // its row set (0 when idle)
    logic             tile_valid;
    assign tile_group = 32'(t) >> lanes_log;
    assign tile_set = (tile_group < 32'(ROW_SETS)) ? SET_W'(tile_group) : '0;
    assign tile_valid = f_valid && tile_group < 32'(ROW_SETS) && f_group_valid[tile_set];
    bitmod_tile #(.ROWS(ROWS), .COLS(COLS), .MAX_ROWS(MAX_ROWS)) tile (
      .clk(clk), .rst(rst), .f_valid(tile_valid), .f_load(f_load), .f_term(f_term),
      .f_last(f_last), .f_crow(f_crow), .f_replace(f_replace),
      .f_act(act_data[ROWS*64*tile_set +: ROWS*64]),
      .f_codes(tile_codes[32*COLS*t +: 32*COLS]), .f_lane_valid(f_lane_valid[4*COLS*t +: 4*COLS]),
      .f_zero(f_zero[8*COLS*t +: 8*COLS]), .f_sv_index(f_sv_index[2*COLS*t +: 2*COLS]),
      .f_scale(f_scale[SB_MAX*COLS*t +: SB_MAX*COLS]), .kind(kind), .bits(bits),
      .sv_enable(sv_enable), .magnitudes(magnitudes), .sv_regs(sv_regs), .sb(sb),
      .drain_row(drain_row), .drain_scale(tile_scale[16*COLS*t +: 16*COLS]),
      .drain_bias(tile_bias[16*COLS*t +: 16*COLS]), .drain_has_bias(drain_has_bias),
      .drain_y(drain_y[16*COLS*t +: 16*COLS]), .drain_c());
  end
endmodule
