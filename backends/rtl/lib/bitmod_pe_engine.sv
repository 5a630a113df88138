// The PE engine: runs one mac at a time on the tile array (docs/rtl.md, "The PE engine").
//
// A mac of `passes` passes of ROWS rows over `k` elements of K: for every pass, every group
// (G elements; the last one shorter when G does not divide k), every step of 4 elements and
// every term, one issue cycle: it reads the step's activations and codes (and the group's
// metadata at its first step) from the buffers' registered ports and presents the term to the
// tiles (bitmod_tile's F stage) in the next cycle. Before every group but the mac's first the
// engine inserts max(0, SB + ROWS - L) empty cycles (L: the group's issue cycles), so group ends
// are at least SB + ROWS apart (the dequantizers and the column accumulators are free by then).
// After the last issue cycle the mac stays busy PIPE + SB + ROWS cycles (the tiles' pipeline,
// the last group's dequantization and its column accumulation): a mac's duration is
// MacTiming.bit_serial_terms (runtime/arch/schedule.py).
module bitmod_pe_engine #(
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int TILES = 1,
  parameter int MAX_ROWS = 64,
  parameter int PIPE = 4,  // bitmod_tile's F, E, M and A stages
  localparam int COLUMNS = COLS * TILES,
  localparam int SB_MAX = bitmod_arith_pkg::SB_MAX,
  localparam int SV_BITS = bitmod_arith_pkg::SV_BITS,
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1
) (
  input  logic                   clk,
  input  logic                   rst,
  input  logic                   start,          // from bitmod_engine: the mac starts
  output logic                   last,           // its last busy cycle
  output logic                   issuing,        // a term issue cycle (for the cycle causes)
  // the mac (constant while it runs)
  input  logic [31:0]            passes,
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
  output logic [31:0]            act_fetch_address,
  output logic [ROWS-1:0]        act_row_valid,
  output logic [3:0]             act_lane_valid,
  input  logic [ROWS*64-1:0]     act_data,
  output logic                   code_fetch,
  output logic [31:0]            code_bit,
  input  logic [COLUMNS*32-1:0]  codes,
  output logic                   meta_fetch,
  output logic [31:0]            meta_bit,
  input  logic [COLUMNS*32-1:0]  meta,
  output logic                   scale_fetch,
  output logic                   act_error,      // an Inf/NaN activation inside the block
  // the drain (bitmod_drain_engine): C rows through the tiles' drain units
  input  logic [ROW_W-1:0]       drain_row,
  input  logic [COLUMNS*16-1:0]  drain_scale,
  input  logic [COLUMNS*16-1:0]  drain_bias,
  input  logic                   drain_has_bias,
  output logic [COLUMNS*16-1:0]  drain_y
);
  // the sequencer: pass, group, step and term of this issue cycle (all 0 when no mac runs)
  logic        running, tailing;
  logic [31:0] pass, group, step, term_index, stall, tail;
  logic [31:0] group_k0, group_len, group_steps, k_step;
  logic        step_last, group_last, row_last, mac_last;
  logic [31:0] next_len, next_cycles, spacing;
  // the F stage (with the buffers' registered data)
  logic                  f_valid, f_load, f_last, f_replace, f_check;
  logic [3:0]            f_term;
  logic [ROW_W-1:0]      f_crow;
  logic [COLUMNS*4-1:0]  f_lane_valid;
  logic [3:0]            f_lanes;
  logic [COLUMNS*8-1:0]  f_zero;
  logic [COLUMNS*2-1:0]  f_sv_index;
  logic [COLUMNS*SB_MAX-1:0] f_scale;

  assign group_k0 = group * group_size;
  assign group_len = (k_valid - group_k0 < group_size) ? k_valid - group_k0 : group_size;
  assign group_steps = (group_len + 32'd3) / 32'd4;
  assign k_step = group_k0 + 32'd4 * step;
  assign step_last = term_index == {28'd0, terms} - 32'd1;
  assign group_last = step_last && step == group_steps - 32'd1;
  assign row_last = group_last && group_k0 + group_size >= k_valid;  // the pass's last group
  assign mac_last = row_last && pass == passes - 32'd1;
  assign issuing = (start || running) && !tailing && stall == 32'd0;
  assign last = tailing && tail == 32'd1;
  // the next group (of this pass, or the first of the next) and the empty cycles before it
  assign next_len = row_last ? ((k_valid < group_size) ? k_valid : group_size)
      : ((k_valid - group_k0 - group_size < group_size) ? k_valid - group_k0 - group_size
                                                         : group_size);
  assign next_cycles = (next_len + 32'd3) / 32'd4 * {28'd0, terms};
  assign spacing = {28'd0, sb} + 32'(ROWS);

  // the buffer reads of this issue cycle
  assign act_fetch = issuing && term_index == 32'd0;
  assign act_fetch_address = act_address + pass * 32'(ROWS) * act_row_stride + 32'd2 * k_step;
  for (genvar r = 0; r < ROWS; r++) begin : row_valid
    assign act_row_valid[r] = pass * 32'(ROWS) + 32'(r) < act_rows;
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
      {pass, group, step, term_index, stall} <= '0;
      f_valid <= 1'b0;
      f_check <= 1'b0;
    end else begin
      f_valid <= issuing;
      f_check <= act_fetch;
      f_load <= term_index == 32'd0;
      f_term <= term_index[3:0];
      f_last <= group_last;
      f_crow <= ROW_W'(pass * 32'(ROWS));
      f_replace <= clear && group == 32'd0;
      f_lanes <= act_lane_valid;
      if (start) running <= 1'b1;
      if (issuing) begin
        term_index <= step_last ? 32'd0 : term_index + 32'd1;
        if (step_last) step <= group_last ? 32'd0 : step + 32'd1;
        if (group_last) begin
          group <= row_last ? 32'd0 : group + 32'd1;
          if (row_last) pass <= mac_last ? 32'd0 : pass + 32'd1;
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

  // the F stage's per-column fields: lanes inside K and the channel, the group's metadata
  for (genvar c = 0; c < COLUMNS; c++) begin : fields
    logic [31:0] word;
    assign word = meta[32*c +: 32];
    assign f_lane_valid[4*c +: 4] = (32'(c) < weight_channels) ? f_lanes : 4'd0;
    assign f_scale[SB_MAX*c +: SB_MAX] = SB_MAX'(word & ((32'd1 << sb) - 32'd1));
    assign f_sv_index[2*c +: 2] = 2'((word >> sb) & ((32'd1 << index_bits) - 32'd1));
    assign f_zero[8*c +: 8] = 8'((word >> (sb + index_bits)) & ((32'd1 << zero_bits) - 32'd1));
  end

  // an activation with an all-ones exponent: the PE has no Inf/NaN
  logic [ROWS*4-1:0] special;
  for (genvar i = 0; i < ROWS * 4; i++) begin : inf_check
    assign special[i] = act_data[16*i + 10 +: 5] == 5'h1F;
  end
  assign act_error = f_check && |special;

  for (genvar t = 0; t < TILES; t++) begin : tiles
    bitmod_tile #(.ROWS(ROWS), .COLS(COLS), .MAX_ROWS(MAX_ROWS)) tile (
      .clk(clk), .rst(rst), .f_valid(f_valid), .f_load(f_load), .f_term(f_term),
      .f_last(f_last), .f_crow(f_crow), .f_replace(f_replace), .f_act(act_data),
      .f_codes(codes[32*COLS*t +: 32*COLS]), .f_lane_valid(f_lane_valid[4*COLS*t +: 4*COLS]),
      .f_zero(f_zero[8*COLS*t +: 8*COLS]), .f_sv_index(f_sv_index[2*COLS*t +: 2*COLS]),
      .f_scale(f_scale[SB_MAX*COLS*t +: SB_MAX*COLS]), .kind(kind), .bits(bits),
      .sv_enable(sv_enable), .magnitudes(magnitudes), .sv_regs(sv_regs), .sb(sb),
      .drain_row(drain_row), .drain_scale(drain_scale[16*COLS*t +: 16*COLS]),
      .drain_bias(drain_bias[16*COLS*t +: 16*COLS]), .drain_has_bias(drain_has_bias),
      .drain_y(drain_y[16*COLS*t +: 16*COLS]), .drain_c());
  end
endmodule
