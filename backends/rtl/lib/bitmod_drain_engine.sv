// The drain engine (docs/rtl.md, "The drain engine"): C row d of every tile's columns through
// the tiles' drain units in the d-th cycle of the drain, into an output-buffer slot, for the
// block's sweeps * ROWS cycles (its last mac's sweeps: bitmod_arith_pkg::row_groups on the
// block's channels, ceil(ceil(rows / ROWS) / S)). In cycle d = i * ROWS + r the tiles of group
// j (tile t: group t / Wg, lane t mod Wg) present output row (i * S + j) * ROWS + r of
// channels lane * COLS + c: S output rows a cycle, which the output buffer writes
// (bitmod_memory). The biases are fetched when the engine takes the command (its address is in
// the command register), the channel scales (fetched by the last mac) are read in the drain's
// first cycle and held; the PE engine spreads both to the tiles by the block's lanes.
module bitmod_drain_engine #(
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int TILES = 1,
  parameter int ROW_GROUPS = 4,
  parameter int MAX_ROWS = 128,
  localparam int COLUMNS = COLS * TILES,
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1
) (
  input  logic                  clk,
  input  logic                  start,
  input  logic                  busy,
  input  logic [31:0]           rows,             // the current command's block: valid rows
  input  logic [31:0]           channels,         // ... and valid channels
  input  logic                  out_slot_in,      // ... and its slot
  output logic [31:0]           duration,         // its busy cycles: sweeps * ROWS
  input  logic [COLUMNS*16-1:0] channel_scales,   // the buffers' port (the last mac's)
  output logic [COLUMNS*16-1:0] drain_scale,
  output logic [ROW_W-1:0]      drain_row,
  output logic [3:0]            drain_lanes,      // log2 Wg (the PE engine's spread)
  output logic                  out_write,
  output logic                  out_slot,
  output logic [ROW_W-1:0]      out_row,          // d: C row and drain cycle
  output logic [3:0]            out_groups,       // log2 S
  output logic [3:0]            out_lanes,        // log2 Wg
  output logic [31:0]           out_rows          // rows of the block (the buffer writes no more)
);
  logic [ROW_W-1:0]      row;
  logic [COLUMNS*16-1:0] held_scales;
  logic [3:0]            groups_log, lanes_log;
  logic [31:0]           passes;

  assign {groups_log, lanes_log} = bitmod_arith_pkg::row_groups(
      channels, 32'(COLS), 32'(TILES), 32'(ROW_GROUPS));
  assign passes = (rows + 32'(ROWS) - 32'd1) / 32'(ROWS);
  assign duration = ((passes + (32'd1 << groups_log) - 32'd1) >> groups_log) * 32'(ROWS);
  assign drain_row = start ? '0 : row;
  assign drain_scale = start ? channel_scales : held_scales;
  assign drain_lanes = lanes_log;
  assign out_write = start || busy;
  assign out_slot = out_slot_in;
  assign out_row = drain_row;
  assign out_groups = groups_log;
  assign out_lanes = lanes_log;
  assign out_rows = rows;

  always_ff @(posedge clk) begin
    if (start) begin
      held_scales <= channel_scales;
      row <= ROW_W'(1);
    end else if (busy) begin
      row <= row + ROW_W'(1);
    end
  end
endmodule
