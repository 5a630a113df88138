// Comparison PEs for the area flow (bench/rtl_area.py), written in the style of the BitMoD PE
// (bitmod_pe.sv) and sharing its FP32 adder (bitmod_arith_pkg::fp32_add).

// An FP16 x FP16 multiply-accumulate PE, one MAC a cycle: the exact product of two FP16 values
// (11 x 11-bit mantissas, representable in FP32) added to an FP32 accumulator, nearest even.
// acc = fp32(acc + fp32(a) * fp32(b)) as numpy computes it (the product is exact).
module fp16_mac_pe (
  input  logic        clk,
  input  logic        rst,
  input  logic        valid,
  input  logic        clear,   // start a new sum with this product
  input  logic [15:0] a,
  input  logic [15:0] b,
  output logic [31:0] acc
);
  // fp32(a) * fp32(b), exact: 22-bit mantissa product, normalized; FP16 subnormals included
  function automatic logic [31:0] product(input logic [15:0] x, input logic [15:0] y);
    logic [21:0] p;
    logic [6:0]  top;
    logic [9:0]  exponent;
    p = {x[14:10] != 5'd0, x[9:0]} * {y[14:10] != 5'd0, y[9:0]};
    top = bitmod_arith_pkg::top_bit(64'(p));
    // value = p * 2^(ex + ey - 50) (effective exponents, subnormals 1); leading one at `top`
    exponent = {5'd0, (x[14:10] == 5'd0) ? 5'd1 : x[14:10]}
             + {5'd0, (y[14:10] == 5'd0) ? 5'd1 : y[14:10]} + {3'd0, top} + 10'd77;
    if (p == 22'd0) product = {x[15] ^ y[15], 31'd0};
    else product = {x[15] ^ y[15], exponent[7:0], 23'({1'b0, p} << (7'd23 - top))};
  endfunction

  logic [31:0] p;
  assign p = product(a, b);

  always_ff @(posedge clk) begin
    if (rst) acc <= 32'd0;
    else if (valid) acc <= clear ? p : bitmod_arith_pkg::fp32_add(acc, p);
  end
endmodule

// A FIGNA-like FP16 x INT8 PE (FP-INT GEMM on integer units): activations are pre-aligned to
// their group's largest exponent by a converter shared along the PE row (figna_align), so the
// PE itself is an integer MAC, one a cycle: a 15-bit signed aligned activation times an INT8
// weight into an exact 40-bit accumulator.
module figna_pe (
  input  logic               clk,
  input  logic               rst,
  input  logic               valid,
  input  logic               clear,
  input  logic signed [14:0] a,      // aligned activation: sign + 11-bit mantissa + 3 guard bits
  input  logic signed [7:0]  w,
  output logic signed [39:0] acc
);
  always_ff @(posedge clk) begin
    if (rst) acc <= '0;
    else if (valid) acc <= (clear ? 40'sd0 : acc) + 40'(a * w);
  end
endmodule

// The row's FP16 -> integer converter of the FIGNA-like array: the activation's 11-bit
// mantissa aligned to the group's largest exponent `group_exp` with 3 guard bits, nearest even
// (the same rounding as the BitMoD PE's lanes), signed.
module figna_align (
  input  logic [15:0]        h,
  input  logic signed [7:0]  group_exp,  // largest ea of the group (ea = biased - 25, or -24)
  output logic signed [14:0] a
);
  logic signed [7:0] ea;
  logic [7:0]        distance;
  logic [63:0]       aligned;
  assign ea = (h[14:10] != 5'd0) ? $signed({3'd0, h[14:10]}) - 8'sd25 : -8'sd24;
  assign distance = 8'(group_exp - ea);
  assign aligned = bitmod_arith_pkg::rne_shift({50'd0, h[14:10] != 5'd0, h[9:0], 3'b000},
                                               (distance > 8'd15) ? 7'd15 : distance[6:0]);
  assign a = h[15] ? -$signed({1'b0, aligned[13:0]}) : $signed({1'b0, aligned[13:0]});
endmodule
