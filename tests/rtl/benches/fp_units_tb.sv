// Test bench wrapper: the rounding functions of bitmod_arith_pkg side by side, combinational.
module fp_units_tb (
  input  logic [31:0] add_a, add_b, mul_a, mul_b, narrow_in,
  input  logic [15:0] widen_in,
  input  logic [63:0] round_in,
  input  logic [40:0] fix_product,
  input  logic [6:0]  fix_shift,
  output logic [31:0] add_y, mul_y, widen_out, fix_out,
  output logic [15:0] narrow_out,
  output logic        round_negative,
  output logic [24:0] round_mantissa,
  output logic [6:0]  round_shift
);
  assign add_y = bitmod_arith_pkg::fp32_add(add_a, add_b);
  assign mul_y = bitmod_arith_pkg::fp32_mul(mul_a, mul_b);
  assign widen_out = bitmod_arith_pkg::fp16_to_fp32(widen_in);
  assign narrow_out = bitmod_arith_pkg::fp32_to_fp16(narrow_in);
  assign {round_negative, round_mantissa, round_shift} = bitmod_arith_pkg::round24(round_in);
  assign fix_out = bitmod_arith_pkg::fix_to_fp32(fix_product, fix_shift);
endmodule
