// Test bench wrapper: one cycle of the PE's 4-lane dot product, combinational.
module pe_step_tb (
  input  logic [63:0] act,
  input  logic [3:0]  w_sign,
  input  logic [15:0] w_exp,
  input  logic [3:0]  w_man,
  input  logic [3:0]  bsig,
  output logic signed [16:0] d,
  output logic [6:0]  shift
);
  assign {d, shift} = bitmod_arith_pkg::pe_step(act, w_sign, w_exp, w_man, bsig);
endmodule
