// The BitMoD PE's parts, for the area breakdown of bench/rtl_area.py (each as bitmod_pe.sv
// builds it: the same functions and register widths).

// The 4-lane step with its output register (stage M).
module pe_part_step (
  input  logic        clk,
  input  logic [63:0] act,
  input  logic [3:0]  w_sign,
  input  logic [15:0] w_exp,
  input  logic [3:0]  w_man,
  input  logic [3:0]  bsig,
  output logic [23:0] step_q
);
  always_ff @(posedge clk) step_q <= bitmod_arith_pkg::pe_step(act, w_sign, w_exp, w_man, bsig);
endmodule

// The exact group accumulator: A += D << shift (64 bits), cleared after a group.
module pe_part_accumulator (
  input  logic               clk,
  input  logic               valid,
  input  logic               last,
  input  logic signed [16:0] d,
  input  logic [6:0]         shift,
  output logic [63:0]        acc
);
  always_ff @(posedge clk) begin
    if (valid) acc <= last ? 64'd0 : acc + (64'($signed(d)) << shift);
  end
endmodule

// A's rounding to 24 bits and the bit-serial dequantizer (Horner over SB scale bits).
module pe_part_dequantizer (
  input  logic        clk,
  input  logic        start,
  input  logic [63:0] sum,
  input  logic [14:0] scale_code,
  input  logic [3:0]  sb,
  output logic [40:0] product,
  output logic [6:0]  product_shift
);
  logic        negative;
  logic [24:0] mantissa;
  logic [6:0]  shift;
  logic [40:0] multiplicand, widened;
  logic [14:0] scale_q;
  logic [3:0]  remaining;
  assign {negative, mantissa, shift} = bitmod_arith_pkg::round24(sum);
  assign widened = {16'd0, mantissa};
  always_ff @(posedge clk) begin
    if (start) begin
      multiplicand <= negative ? -widened : widened;
      product_shift <= shift;
      product <= '0;
      scale_q <= scale_code;
      remaining <= sb;
    end else if (remaining != 4'd0) begin
      if (remaining == sb) product <= scale_q[remaining - 4'd1] ? -multiplicand : '0;
      else product <= (product << 1) + (scale_q[remaining - 4'd1] ? multiplicand : '0);
      remaining <= remaining - 4'd1;
    end
  end
endmodule

// The row groups' activation select of one tile (bitmod_pe_engine's tile loop): the tile's row
// set (its group, 0 when idle) picks ROWS * 64 bits out of the port's ROW_SETS row sets.
module row_group_part_select #(
  parameter int ROWS = 8,
  parameter int ROW_SETS = 4,
  localparam int SET_W = (ROW_SETS > 1) ? $clog2(ROW_SETS) : 1
) (
  input  logic [ROW_SETS*ROWS*64-1:0] act_data,
  input  logic [SET_W-1:0]            tile_set,
  output logic [ROWS*64-1:0]          f_act
);
  assign f_act = act_data[ROWS*64*tile_set +: ROWS*64];
endmodule
