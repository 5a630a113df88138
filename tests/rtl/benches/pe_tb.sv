// Test bench wrapper: one PE (the top level's own output variables are not seen by cocotb under
// Icarus 11 when the module assigns them in always_ff; a wrapper's nets are).
module pe_tb (
  input  logic        clk,
  input  logic        rst,
  input  logic        valid,
  input  logic        last,
  input  logic [63:0] act,
  input  logic [3:0]  w_sign,
  input  logic [15:0] w_exp,
  input  logic [3:0]  w_man,
  input  logic [3:0]  bsig,
  input  logic [14:0] scale_code,
  input  logic [3:0]  sb,
  output logic [40:0] product,
  output logic [6:0]  product_shift,
  output logic        product_ready,
  output logic [63:0] group_sum
);
  bitmod_pe pe (.*);
endmodule
