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
  localparam int ACC_BITS = bitmod_arith_pkg::ACC_BITS;
  localparam int PRODUCT_BITS = bitmod_arith_pkg::PRODUCT_BITS;

  logic signed [16:0] d, d_m;
  logic [6:0]         shift, shift_m;
  logic               valid_m, last_m;
  logic [bitmod_arith_pkg::SB_MAX-1:0] scale_m, scale_q;
  logic [ACC_BITS-1:0] acc, sum;
  logic               negative;
  logic [24:0]        mantissa;
  logic [6:0]         rounded_shift;
  logic [PRODUCT_BITS-1:0] multiplicand, widened;
  logic [3:0]         remaining;
  logic               scale_bit;

  assign {d, shift} = bitmod_arith_pkg::pe_step(act, w_sign, w_exp, w_man, bsig);
  assign sum = acc + (ACC_BITS'($signed(d_m)) << shift_m);
  assign {negative, mantissa, rounded_shift} = bitmod_arith_pkg::round24(sum);
  assign widened = {{(PRODUCT_BITS - 25){1'b0}}, mantissa};
  assign scale_bit = scale_q[remaining - 4'd1];

  always_ff @(posedge clk) begin
    if (rst) begin
      acc <= '0;
      valid_m <= 1'b0;
      last_m <= 1'b0;
      remaining <= 4'd0;
      product_ready <= 1'b0;
    end else begin
      // stage M: the step
      valid_m <= valid;
      last_m <= valid && last;
      d_m <= d;
      shift_m <= shift;
      if (valid && last) scale_m <= scale_code;
      // stage A: accumulate; at the group's end hand A to the dequantizer
      if (valid_m) acc <= last_m ? '0 : sum;
      product_ready <= remaining == 4'd1;
      if (valid_m && last_m) begin
        group_sum <= sum;
        multiplicand <= negative ? -widened : widened;
        product_shift <= rounded_shift;
        product <= '0;
        scale_q <= scale_m;
        remaining <= sb;
      end else if (remaining != 4'd0) begin
        if (remaining == sb) product <= scale_bit ? -multiplicand : '0;
        else product <= (product << 1) + (scale_bit ? multiplicand : '0);
        remaining <= remaining - 4'd1;
      end
    end
  end
endmodule
