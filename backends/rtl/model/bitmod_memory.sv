// The memories of the accelerator and their ports (docs/rtl.md, "Memories"): the DRAM model,
// the activation and weight buffers (two halves each), the double-buffered output buffer, the
// one DMA path the DRAM channel serves, and the registered read ports of the PE and drain
// engines. Byte arrays: a behavioral model of SRAM and DRAM, not part of the area flow.
//
// DMA: a transfer moves `segments` segments of `segment_bytes` bytes from `src` (stride
// `src_stride`) to `dst` (stride `dst_stride`). The bytes move in the transfer's first cycle;
// the channel (bitmod_accel) then stays busy for the transfer's ceil(n * DEN / NUM) cycles
// and no consumer reads them before its last (the engines' dependencies, docs/rtl.md).
//
// Layouts: an activation block holds row r, element k at half base + (r * KA + k) * 2; a
// weight block holds channel j at half base + j * w(KA), w = the channel's packed codes, then
// its packed group metadata (scale code, SV index, zero point per group, LSB first), then its
// FP16 channel scale; an output-buffer slot holds row r, column c at
// slot * MAX_ROWS * C * 2 + (r * C + c) * 2.
//
// Row groups (docs/rtl.md, "The PE engine"): the activation port reads the ROW_SETS * ROWS rows
// of a sweep at once (row set j: group j's pass), and the drain writes S output rows a cycle
// (group j's tiles, tile t's COLS outputs to its lane's channels): a buffer banked by
// pass mod ROW_GROUPS takes both without conflicts (the S passes of a sweep are consecutive).
module bitmod_memory #(
  parameter int DRAM_BYTES = 1 << 20,
  parameter int ACT_BYTES = 1 << 16,
  parameter int WEIGHT_BYTES = 1 << 16,
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int TILES = 1,
  parameter int ROW_SETS = 1,     // row sets of the activation port (bitmod_pe_engine)
  parameter int MAX_ROWS = 64,
  localparam int COLUMNS = COLS * TILES,  // output channels of a column block
  localparam int ROW_W = (MAX_ROWS > 1) ? $clog2(MAX_ROWS) : 1,
  localparam int OUT_BYTES = 2 * MAX_ROWS * COLUMNS * 2
) (
  input  logic                  clk,
  // the DMA path
  input  logic                  dma_copy,         // a load starts / a store ends: move its bytes
  input  logic [1:0]            dma_kind,         // DMA_ACT, DMA_WEIGHT, DMA_STORE
  input  logic [31:0]           dma_src,
  input  logic [31:0]           dma_src_stride,
  input  logic [31:0]           dma_dst,
  input  logic [31:0]           dma_dst_stride,
  input  logic [31:0]           dma_segment_bytes,
  input  logic [31:0]           dma_segments,
  // activation read port: ROW_SETS * ROWS consecutive rows of 4 FP16 (0 where not valid),
  // registered on act_fetch
  input  logic                  act_fetch,
  input  logic [31:0]           act_address,      // byte address of row 0's first lane
  input  logic [31:0]           act_row_stride,   // bytes
  input  logic [ROW_SETS*ROWS-1:0] act_row_valid,
  input  logic [3:0]            act_lane_valid,
  output logic [ROW_SETS*ROWS*64-1:0] act_data,
  // weight read port: per channel 4 codes of `bits` bits from bit `code_bit` of its row
  input  logic                  code_fetch,
  input  logic [31:0]           weight_address,   // byte address of channel 0's row
  input  logic [31:0]           weight_stride,    // bytes: w(KA)
  input  logic [31:0]           code_bit,
  input  logic [3:0]            bits,
  output logic [COLUMNS*32-1:0] codes,
  // ... the group's metadata: 32 bits from bit `meta_bit` of the row's metadata part
  input  logic                  meta_fetch,
  input  logic [31:0]           meta_byte,        // where the metadata part starts in a row
  input  logic [31:0]           meta_bit,
  output logic [COLUMNS*32-1:0] meta,
  // ... the channel scales (the last two bytes of each row)
  input  logic                  scale_fetch,
  input  logic [31:0]           scale_byte,
  output logic [COLUMNS*16-1:0] channel_scales,
  // drain: in cycle d = i * ROWS + r, tile t (group j = t / Wg < S, lane l = t mod Wg) gives
  // row (i * S + j) * ROWS + r, channels l * COLS .. + COLS - 1 (rows of the block only)
  // into an output-buffer slot; biases from DRAM
  input  logic                  out_write,
  input  logic                  out_slot,
  input  logic [ROW_W-1:0]      out_row,          // d
  input  logic [3:0]            out_groups,       // log2 S
  input  logic [3:0]            out_lanes,        // log2 Wg
  input  logic [31:0]           out_rows,         // the block's valid rows
  input  logic [COLUMNS*16-1:0] out_data,         // by tile
  input  logic                  bias_fetch,
  input  logic [31:0]           bias_address,     // byte address of column 0's bias
  input  logic [COLUMNS-1:0]    bias_valid,
  output logic [COLUMNS*16-1:0] biases
);
  localparam logic [1:0] DMA_ACT = 2'd0, DMA_WEIGHT = 2'd1;  // else DMA_STORE = 2

  logic [7:0] dram [DRAM_BYTES];
  logic [7:0] act_buffer [ACT_BYTES];
  logic [7:0] weight_buffer [WEIGHT_BYTES];
  logic [7:0] out_buffer [OUT_BYTES];
  logic [39:0] code_window, meta_window;
  logic [31:0] out_group, out_at, out_channel;  // the drain's temporaries of one cycle

  // the DMA path: a behavioral copy in a load's first cycle and in a store's last (the drain
  // may still write the store's block while the store holds the channel; it has ended by the
  // store's last cycle). Blocking writes (Verilator 5.006 has no delayed array writes in
  // loops): no port reads what a transfer writes in the cycle it copies (the engines'
  // dependencies).
  /* verilator lint_off BLKSEQ */
  always_ff @(posedge clk) begin
    if (dma_copy) begin
      for (int s = 0; s < dma_segments; s++) begin
        for (int b = 0; b < dma_segment_bytes; b++) begin
          case (dma_kind)
            DMA_ACT: act_buffer[dma_dst + s * dma_dst_stride + b] =
                dram[dma_src + s * dma_src_stride + b];
            DMA_WEIGHT: weight_buffer[dma_dst + s * dma_dst_stride + b] =
                dram[dma_src + s * dma_src_stride + b];
            default: dram[dma_dst + s * dma_dst_stride + b] =
                out_buffer[dma_src + s * dma_src_stride + b];
          endcase
        end
      end
    end
  end

  // the PE engine's read ports (the windows are temporaries of one cycle)
  always_ff @(posedge clk) begin
    if (act_fetch) begin
      for (int r = 0; r < ROW_SETS * ROWS; r++) begin
        for (int lane = 0; lane < 4; lane++) begin
          if (act_row_valid[r] && act_lane_valid[lane]) begin
            act_data[64*r + 16*lane +: 8] <= act_buffer[act_address + r * act_row_stride + 2 * lane];
            act_data[64*r + 16*lane + 8 +: 8] <=
                act_buffer[act_address + r * act_row_stride + 2 * lane + 1];
          end else begin
            act_data[64*r + 16*lane +: 16] <= 16'd0;
          end
        end
      end
    end
    if (code_fetch) begin
      for (int c = 0; c < COLUMNS; c++) begin
        for (int b = 0; b < 5; b++) begin
          code_window[8*b +: 8] = weight_buffer[weight_address + c * weight_stride + code_bit / 8 + b];
        end
        code_window = code_window >> (code_bit % 8);
        for (int lane = 0; lane < 4; lane++) begin
          codes[32*c + 8*lane +: 8] <= 8'(code_window >> (lane * bits)) & 8'((9'd1 << bits) - 9'd1);
        end
      end
    end
    if (meta_fetch) begin
      for (int c = 0; c < COLUMNS; c++) begin
        for (int b = 0; b < 5; b++) begin
          meta_window[8*b +: 8] =
              weight_buffer[weight_address + c * weight_stride + meta_byte + meta_bit / 8 + b];
        end
        meta[32*c +: 32] <= 32'(meta_window >> (meta_bit % 8));
      end
    end
    if (scale_fetch) begin
      for (int c = 0; c < COLUMNS; c++) begin
        channel_scales[16*c +: 8] <= weight_buffer[weight_address + c * weight_stride + scale_byte];
        channel_scales[16*c + 8 +: 8] <=
            weight_buffer[weight_address + c * weight_stride + scale_byte + 1];
      end
    end
  end

  /* verilator lint_on BLKSEQ */

  // the drain engine's ports
  always_ff @(posedge clk) begin
    if (out_write) begin
      for (int t = 0; t < TILES; t++) begin
        out_group = t >> out_lanes;
        out_at = (((32'(out_row) / ROWS) << out_groups) + out_group) * ROWS + 32'(out_row) % ROWS;
        if (out_group < (32'd1 << out_groups) && out_at < out_rows) begin
          for (int c = 0; c < COLS; c++) begin
            out_channel = (32'(t) & ((32'd1 << out_lanes) - 32'd1)) * COLS + c;
            out_buffer[(32'(out_slot) * MAX_ROWS + out_at) * COLUMNS * 2 + 2 * out_channel] =
                out_data[16*(COLS*t + c) +: 8];
            out_buffer[(32'(out_slot) * MAX_ROWS + out_at) * COLUMNS * 2 + 2 * out_channel + 1] =
                out_data[16*(COLS*t + c) + 8 +: 8];
          end
        end
      end
    end
    if (bias_fetch) begin
      for (int c = 0; c < COLUMNS; c++) begin
        biases[16*c +: 8] <= bias_valid[c] ? dram[bias_address + 2 * c] : 8'd0;
        biases[16*c + 8 +: 8] <= bias_valid[c] ? dram[bias_address + 2 * c + 1] : 8'd0;
      end
    end
  end
endmodule
