// One output-stationary tile (paper Sec. IV-C, Fig. 6): ROWS x COLS PEs; activations are
// broadcast along a row, a column's bit-serial terms down the column (one term encoder per
// column), one shared FP32 accumulator and one drain unit per column.
//
// Pipeline (the PE engine drives the F stage, docs/rtl.md "The PE engine"):
//   cycle i    F: the engine's fetch registers (codes, activations, group metadata, control)
//   cycle i+1  E: term encoders -> E registers
//   cycle i+2  M: the PEs' 4-lane step -> registered
//   cycle i+3  A: group accumulators; at a group's last term A goes to the dequantizers
//   i+4 .. i+3+SB         bit-serial dequantization (SB cycles)
//   i+4+SB .. i+3+SB+ROWS the column accumulator takes PE r in cycle i+4+SB+r
// so the last cycle a mac's groups use is 3 + SB + ROWS after its last F cycle, and two
// groups' last F cycles must be at least SB + ROWS apart (the engine stalls to keep them so).
module bitmod_tile #(
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int MAX_ROWS = 128,
  localparam int SB_MAX = bitmod_arith_pkg::SB_MAX,
  localparam int SV_BITS = bitmod_arith_pkg::SV_BITS,
  localparam int PRODUCT_BITS = bitmod_arith_pkg::PRODUCT_BITS,
  localparam int PE_W = (ROWS > 1) ? $clog2(ROWS) : 1,
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1
) (
  input  logic                   clk,
  input  logic                   rst,
  // F stage
  input  logic                   f_valid,       // a term cycle
  input  logic                   f_load,        // ... the first of a step
  input  logic [3:0]             f_term,        // term index
  input  logic                   f_last,        // ... the last of a group
  input  logic [ROW_W-1:0]       f_crow,        // C row of the pass's first row
  input  logic                   f_replace,     // first group after acc.clr: C = x
  input  logic [ROWS*64-1:0]     f_act,         // row r: 4 FP16 (0 outside the block)
  input  logic [COLS*32-1:0]     f_codes,       // column c: 4 codes
  input  logic [COLS*4-1:0]      f_lane_valid,  // column c: lanes inside the tensor
  input  logic [COLS*8-1:0]      f_zero,        // the group's zero point (INT asym)
  input  logic [COLS*2-1:0]      f_sv_index,    // the group's SV index
  input  logic [COLS*SB_MAX-1:0] f_scale,       // the group's scale code
  // the format and registers (constant during a mac)
  input  logic [1:0]             kind,
  input  logic [3:0]             bits,
  input  logic                   sv_enable,
  input  logic [39:0]            magnitudes,
  input  logic [4*SV_BITS-1:0]   sv_regs,
  input  logic [3:0]             sb,
  // drain: C row `drain_row` of every column through its drain unit
  input  logic [ROW_W-1:0]       drain_row,
  input  logic [COLS*16-1:0]     drain_scale,   // FP16 channel scales
  input  logic [COLS*16-1:0]     drain_bias,    // FP16 biases
  input  logic                   drain_has_bias,
  output logic [COLS*16-1:0]     drain_y,
  output logic [COLS*32-1:0]     drain_c        // the accumulators themselves (tests)
);
  // E stage
  logic               e_valid, e_last, e_replace;
  logic [ROW_W-1:0]   e_crow;
  logic [ROWS*64-1:0] e_act;
  logic [COLS*4-1:0]  enc_sign, enc_man, e_sign, e_man;
  logic [COLS*16-1:0] enc_exp, e_exp;
  logic [COLS*4-1:0]  enc_bsig, e_bsig;
  logic [COLS*SB_MAX-1:0] e_scale;
  // the group tag (C row, replace) follows a group's end to the column accumulators
  logic               m_last;
  logic [ROW_W:0]     tag_m, tag_q, serving_tag;
  logic               serving;
  logic [PE_W-1:0]    serve_pe, next_pe;
  logic               serve;
  logic [ROW_W-1:0]   serve_row;
  logic               serve_replace;
  logic [ROWS*COLS-1:0] ready;
  logic [ROWS*COLS*PRODUCT_BITS-1:0] products;
  logic [ROWS*COLS*7-1:0] product_shifts;

  for (genvar c = 0; c < COLS; c++) begin : encoders
    bitmod_term_encoder #(.SV_BITS(SV_BITS)) encoder (
      .clk(clk), .enable(f_valid), .load(f_load), .codes(f_codes[32*c +: 32]),
      .lane_valid(f_lane_valid[4*c +: 4]), .zero(f_zero[8*c +: 8]),
      .sv_index(f_sv_index[2*c +: 2]), .sv_regs(sv_regs), .kind(kind), .bits(bits),
      .sv_enable(sv_enable), .magnitudes(magnitudes), .term(f_term),
      .sign(enc_sign[4*c +: 4]), .exp(enc_exp[16*c +: 16]), .man(enc_man[4*c +: 4]),
      .bsig(enc_bsig[4*c +: 4]));
  end

  always_ff @(posedge clk) begin
    if (rst) begin
      e_valid <= 1'b0;
      e_last <= 1'b0;
      m_last <= 1'b0;
      serving <= 1'b0;
    end else begin
      e_valid <= f_valid;
      e_last <= f_valid && f_last;
      m_last <= e_valid && e_last;
      if (f_valid && f_load) e_act <= f_act;
      e_sign <= enc_sign;
      e_exp <= enc_exp;
      e_man <= enc_man;
      e_bsig <= enc_bsig;
      e_scale <= f_scale;
      e_crow <= f_crow;
      e_replace <= f_replace;
      if (e_valid && e_last) tag_m <= {e_replace, e_crow};
      if (m_last) tag_q <= tag_m;
      if (ready[0]) begin
        serving <= ROWS > 1;
        serving_tag <= tag_q;
        serve_pe <= PE_W'(1);
      end else if (serving) begin
        serving <= 32'(serve_pe) != ROWS - 1;
        serve_pe <= serve_pe + PE_W'(1);
      end
    end
  end

  // the PEs: ROWS x COLS bitmod_pe state words (bitmod_arith_pkg::pe_next), PE (r, c) at
  // r * COLS + c, stepped in one loop (a simulator compiles its body once per tile; as
  // instances of bitmod_pe, Verilator 5 emits the PE's code once per PE: 16 tiles of 8x8 made
  // some 250 MB of C++)
  localparam int N_PE = ROWS * COLS;
  localparam int STATE = bitmod_arith_pkg::PE_STATE_BITS;
  logic [N_PE*STATE-1:0] pe_state;
  always_ff @(posedge clk) begin
    for (int i = 0; i < N_PE; i++) begin
      pe_state[STATE*i +: STATE] <= bitmod_arith_pkg::pe_next(
          pe_state[STATE*i +: STATE], rst, e_valid, e_last, e_act[64*(i / COLS) +: 64],
          e_sign[4*(i % COLS) +: 4], e_exp[16*(i % COLS) +: 16], e_man[4*(i % COLS) +: 4],
          e_bsig[4*(i % COLS) +: 4], e_scale[SB_MAX*(i % COLS) +: SB_MAX], sb);
    end
  end
  for (genvar i = 0; i < N_PE; i++) begin : pes
    assign products[PRODUCT_BITS*i +: PRODUCT_BITS] =
        pe_state[STATE*i + bitmod_arith_pkg::PE_PRODUCT_LO +: PRODUCT_BITS];
    assign product_shifts[7*i +: 7] = pe_state[STATE*i + bitmod_arith_pkg::PE_PRODUCT_SHIFT_LO +: 7];
    assign ready[i] = pe_state[STATE*i + bitmod_arith_pkg::PE_READY_LO];
  end

  // the column accumulators serve PE 0 in the cycle its product is ready, then PE 1, ...
  assign serve = ready[0] || serving;
  assign next_pe = ready[0] ? PE_W'(0) : serve_pe;
  assign serve_row = ready[0] ? tag_q[ROW_W-1:0] : serving_tag[ROW_W-1:0] + ROW_W'(serve_pe);
  assign serve_replace = ready[0] ? tag_q[ROW_W] : serving_tag[ROW_W];

  for (genvar c = 0; c < COLS; c++) begin : columns
    logic [ROWS*PRODUCT_BITS-1:0] column_products;
    logic [ROWS*7-1:0] column_shifts;
    for (genvar r = 0; r < ROWS; r++) begin : gather
      assign column_products[PRODUCT_BITS*r +: PRODUCT_BITS] =
          products[PRODUCT_BITS*(r*COLS + c) +: PRODUCT_BITS];
      assign column_shifts[7*r +: 7] = product_shifts[7*(r*COLS + c) +: 7];
    end
    bitmod_column #(.ROWS(ROWS), .MAX_ROWS(MAX_ROWS)) column (
      .clk(clk), .products(column_products), .shifts(column_shifts), .serve(serve),
      .serve_pe(next_pe), .serve_row(serve_row), .replace(serve_replace),
      .read_row(drain_row), .read_value(drain_c[32*c +: 32]));
    assign drain_y[16*c +: 16] = bitmod_arith_pkg::drain(
        drain_c[32*c +: 32], drain_scale[16*c +: 16], drain_bias[16*c +: 16], drain_has_bias);
  end
endmodule
