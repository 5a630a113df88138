// The drain engine (docs/rtl.md, "The drain engine"): C row r of every column through the
// tiles' drain units in the r-th cycle of the drain, into an output-buffer slot; a row a
// cycle for the block's passes * ROWS rows (the tiles' drain_y goes to the output buffer). The biases are fetched when the engine takes the
// command (its address is in the command register), the channel scales (fetched by the last
// mac) are read in the drain's first cycle and held.
module bitmod_drain_engine #(
  parameter int COLUMNS = 8,
  parameter int MAX_ROWS = 64,
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1
) (
  input  logic                  clk,
  input  logic                  start,
  input  logic                  busy,
  input  logic                  out_slot_in,      // the current command's slot
  input  logic [COLUMNS*16-1:0] channel_scales,   // the buffers' port (the last mac's)
  output logic [COLUMNS*16-1:0] drain_scale,
  output logic [ROW_W-1:0]      drain_row,
  output logic                  out_write,
  output logic                  out_slot,
  output logic [ROW_W-1:0]      out_row
);
  logic [ROW_W-1:0]      row;
  logic [COLUMNS*16-1:0] held_scales;

  assign drain_row = start ? '0 : row;
  assign drain_scale = start ? channel_scales : held_scales;
  assign out_write = start || busy;
  assign out_slot = out_slot_in;
  assign out_row = drain_row;

  always_ff @(posedge clk) begin
    if (start) begin
      held_scales <= channel_scales;
      row <= ROW_W'(1);
    end else if (busy) begin
      row <= row + ROW_W'(1);
    end
  end
endmodule
