// The per-column accumulator of a tile (paper Sec. IV-C: "every PE column contains a local
// output buffer and an accumulator").

// The column accumulator C (step 5): one FP32 adder shared by the column's ROWS PEs, serving one
// PE a cycle; C holds the partial sums of MAX_ROWS rows (an output block of MR <= MAX_ROWS rows
// takes MR / ROWS passes). A served PE's product is rounded once to FP32 and added to its row:
// C[row] = C[row] + x, or C[row] = x for the first group after acc.clr (exactly 0 + x: x is
// never -0).
module bitmod_column #(
  parameter int ROWS = 8,
  parameter int MAX_ROWS = 128,
  localparam int PRODUCT_BITS = bitmod_arith_pkg::PRODUCT_BITS,
  localparam int PE_W = (ROWS > 1) ? $clog2(ROWS) : 1,
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1
) (
  input  logic                         clk,
  input  logic [ROWS*PRODUCT_BITS-1:0] products,
  input  logic [ROWS*7-1:0]            shifts,
  input  logic                         serve,
  input  logic [PE_W-1:0]              serve_pe,
  input  logic [ROW_W-1:0]             serve_row,
  input  logic                         replace,
  input  logic [ROW_W-1:0]             read_row,
  output logic [31:0]                  read_value
);
  logic [31:0] acc [MAX_ROWS];
  logic [31:0] x, total;

  assign x = bitmod_arith_pkg::fix_to_fp32(
      products[serve_pe*PRODUCT_BITS +: PRODUCT_BITS], shifts[serve_pe*7 +: 7]);
  assign total = bitmod_arith_pkg::fp32_add(acc[serve_row], x);

  always_ff @(posedge clk) begin
    if (serve) acc[serve_row] <= replace ? x : total;
  end

  assign read_value = acc[read_row];
endmodule
