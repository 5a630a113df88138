// The BitMoD processing element (paper Sec. IV-B, Fig. 5; docs/ISA.md "PE arithmetic"):
// the 4-lane step (bitmod_arith_pkg::pe_step, registered), the exact group accumulator A
// (sign + 63 bits, LSB 2^-27) and the bit-serial dequantizer.
//
// After the group's last term A is rounded to a 24-bit mantissa (bitmod_arith_pkg::round24)
// and multiplied by the group's SB-bit signed scale code, one bit a cycle, most significant
// first (Horner; the top bit weighs negative). The exact product and its shift stay until the
// column accumulator takes them; `product_ready` is high the cycle after they are final.
//
// Timing: a term presented in cycle t is accumulated at the end of cycle t+1; a group whose
// last term is presented in cycle t has its product final at the end of cycle t+1+SB, and the
// PE may present the next group's last term from cycle t+SB+ROWS on (the column accumulator
// takes one PE a cycle; the engine spaces groups so, docs/rtl.md).
module bitmod_pe (
  input  logic                                     clk,
  input  logic                                     rst,
  input  logic                                     valid,       // a term cycle
  input  logic                                     last,        // ... the group's last
  input  logic [63:0]                              act,
  input  logic [3:0]                               w_sign,
  input  logic [15:0]                              w_exp,
  input  logic [3:0]                               w_man,
  input  logic [3:0]                               bsig,
  input  logic [bitmod_arith_pkg::SB_MAX-1:0]      scale_code,  // the group's, with `last`
  input  logic [3:0]                               sb,
  output logic [bitmod_arith_pkg::PRODUCT_BITS-1:0] product,
  output logic [6:0]                               product_shift,
  output logic                                     product_ready,
  output logic [bitmod_arith_pkg::ACC_BITS-1:0]    group_sum    // the last group's A (tests)
);
  // the registers: one state word, stepped by bitmod_arith_pkg::pe_next (the tile keeps an
  // array of the same words)
  logic [bitmod_arith_pkg::PE_STATE_BITS-1:0] state;

  always_ff @(posedge clk) begin
    state <= bitmod_arith_pkg::pe_next(
        state, rst, valid, last, act, w_sign, w_exp, w_man, bsig, scale_code, sb);
  end

  assign product = state[bitmod_arith_pkg::PE_PRODUCT_LO +: bitmod_arith_pkg::PRODUCT_BITS];
  assign product_shift = state[bitmod_arith_pkg::PE_PRODUCT_SHIFT_LO +: 7];
  assign product_ready = state[bitmod_arith_pkg::PE_READY_LO];
  assign group_sum = state[bitmod_arith_pkg::PE_GROUP_SUM_LO +: bitmod_arith_pkg::ACC_BITS];
endmodule
