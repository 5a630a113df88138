// The BitMoD accelerator (docs/rtl.md): the controller, the load, PE, drain and store engines,
// the one DRAM channel they share, the counters of completed work their commands wait for,
// and the cycle counters of a run (by cause, as runtime/arch/timing.py attributes them).
module bitmod_accel #(
  parameter int ROWS = 8,
  parameter int COLS = 8,
  parameter int TILES = 1,
  parameter int ROW_GROUPS = 4,  // a power of two (HardwareConfig.row_groups)
  parameter int ACT_BUFFER_BYTES = 1 << 16,
  parameter int WEIGHT_BUFFER_BYTES = 1 << 16,
  parameter int MAX_BLOCK_ROWS = 128,
  parameter int DRAM_NUM = 128,
  parameter int DRAM_DEN = 5,
  parameter int DRAM_BYTES = 1 << 20,
  parameter int IMAGE_BYTES = 1 << 16,
  parameter int MAX_DESC = 64,
  parameter int MAX_STRINGS = 64,
  parameter int MAX_INSTR = 4096,
  parameter int MAX_OUT_UNITS = 1024,
  parameter int PIPE = 4,
  localparam int COLUMNS = COLS * TILES,
  // the activation port's row sets (bitmod_pe_engine's ROW_SETS)
  localparam int TILE_POW2 = 1 << ($clog2(TILES + 1) - 1),
  localparam int ROW_SETS = (ROW_GROUPS < TILE_POW2) ? ROW_GROUPS : TILE_POW2,
  localparam int SV_BITS = bitmod_arith_pkg::SV_BITS,
  localparam int ROW_W = (MAX_BLOCK_ROWS > 1) ? $clog2(MAX_BLOCK_ROWS) : 1,
  localparam int LD_W = 1 + 9 * 32,
  localparam int PE_W = 13 * 32 + 4 + 4 + 1 + 2 + 4 + 1 + 40 + 2 + 4 + 4 * SV_BITS,
  localparam int DR_W = 5 * 32 + 2 + COLUMNS,
  localparam int ST_W = 9 * 32
) (
  input  logic        clk,
  input  logic        rst,
  input  logic [31:0] image_length,
  output logic        done,          // halted with every engine idle, or refused
  output logic        error,
  output logic [7:0]  error_code,
  output logic [31:0] error_where,
  output logic [31:0] boot_cycles,
  output logic [31:0] cycles,        // of the run: from the first instruction to done
  output logic [31:0] cycles_compute,
  output logic [31:0] cycles_dequant_tail,
  output logic [31:0] cycles_drain,
  output logic [31:0] cycles_dram_stall,
  output logic [31:0] cycles_other
);
  logic running, halted, act_error;
  logic ld_issue, pe_issue, dr_issue, st_issue;
  logic [LD_W-1:0] ld_payload, ld_current;
  logic [PE_W-1:0] pe_payload, pe_current;
  logic [DR_W-1:0] dr_payload, dr_current, dr_pending;
  logic [ST_W-1:0] st_payload, st_current;
  logic ld_full, pe_full, dr_full, st_full;
  logic ld_has, pe_has, dr_has, st_has;
  logic ld_ready, pe_ready, dr_ready, st_ready;
  logic ld_grant, st_grant;
  logic ld_start, pe_start, dr_start, st_start;
  logic ld_busy, pe_busy, dr_busy, st_busy;
  logic ld_waiting, pe_waiting, dr_waiting, st_waiting;
  logic ld_done, pe_done, dr_done, st_done;
  logic dr_accept;
  logic pe_last, pe_rows_final, pe_issuing;
  // the counters of completed work (visible the cycle after)
  logic [31:0] loads_done, macs_done, drains_started, drains_done, stores_done;
  // macs whose last C rows are being written (a drain may start from the next cycle: it reads
  // row d in its cycle d, after the row's last write); the running drain's busy cycles left
  logic [31:0] macs_rows_final, dr_left;

  bitmod_controller #(
    .ROWS(ROWS), .COLS(COLS), .TILES(TILES), .ACT_BUFFER_BYTES(ACT_BUFFER_BYTES),
    .WEIGHT_BUFFER_BYTES(WEIGHT_BUFFER_BYTES), .MAX_BLOCK_ROWS(MAX_BLOCK_ROWS),
    .DRAM_NUM(DRAM_NUM), .DRAM_DEN(DRAM_DEN), .IMAGE_BYTES(IMAGE_BYTES), .MAX_DESC(MAX_DESC),
    .MAX_STRINGS(MAX_STRINGS), .MAX_INSTR(MAX_INSTR), .MAX_OUT_UNITS(MAX_OUT_UNITS)
  ) controller (
    .clk(clk), .rst(rst), .image_length(image_length), .running(running), .halted(halted),
    .error(error), .error_code(error_code), .error_where(error_where),
    .boot_cycles(boot_cycles), .act_error(act_error),
    .ld_full(ld_full), .ld_issue(ld_issue), .ld_payload(ld_payload),
    .pe_full(pe_full), .pe_issue(pe_issue), .pe_payload(pe_payload),
    .dr_full(dr_full), .dr_issue(dr_issue), .dr_payload(dr_payload),
    .st_full(st_full), .st_issue(st_issue), .st_payload(st_payload));

  // ---- the commands, unpacked (the field orders of bitmod_controller's payloads) ----------
  logic        ld_weight;
  logic [31:0] ld_src, ld_src_stride, ld_dst, ld_dst_stride, ld_segment, ld_segments,
               ld_cycles, ld_need_macs, ld_need_stores;
  assign {ld_weight, ld_src, ld_src_stride, ld_dst, ld_dst_stride, ld_segment, ld_segments,
          ld_cycles, ld_need_macs, ld_need_stores} = ld_current;
  logic [31:0] pe_need_loads, pe_need_drains, pe_passes, pe_k, pe_group, pe_act_address,
               pe_act_stride, pe_act_rows, pe_w_base, pe_w_stride, pe_meta_byte, pe_scale_byte,
               pe_channels;
  logic [3:0]  pe_terms, pe_sb, pe_bits, pe_zero_bits;
  logic        pe_clear, pe_sv_enable;
  logic [1:0]  pe_kind, pe_index_bits;
  logic [39:0] pe_magnitudes;
  logic [4*SV_BITS-1:0] pe_sv;
  assign {pe_need_loads, pe_need_drains, pe_passes, pe_k, pe_group, pe_terms, pe_sb, pe_clear,
          pe_act_address, pe_act_stride, pe_act_rows, pe_w_base, pe_w_stride, pe_meta_byte,
          pe_scale_byte, pe_channels, pe_kind, pe_bits, pe_sv_enable, pe_magnitudes,
          pe_index_bits, pe_zero_bits, pe_sv} = pe_current;
  logic [31:0] dr_need_macs, dr_need_store, dr_rows, dr_channels, dr_bias_address, dr_cycles;
  logic        dr_slot, dr_has_bias;
  logic [COLUMNS-1:0] dr_bias_columns;
  assign {dr_need_macs, dr_need_store, dr_rows, dr_channels, dr_slot, dr_has_bias,
          dr_bias_address, dr_bias_columns} = dr_current;
  logic [31:0] next_bias_address;
  logic [COLUMNS-1:0] next_bias_columns;
  assign next_bias_address = dr_pending[COLUMNS +: 32];
  assign next_bias_columns = dr_pending[0 +: COLUMNS];
  logic [31:0] st_need_drains, st_need_loads, st_src, st_src_stride, st_dst, st_dst_stride,
               st_segment, st_segments, st_cycles;
  assign {st_need_drains, st_need_loads, st_src, st_src_stride, st_dst, st_dst_stride,
          st_segment, st_segments, st_cycles} = st_current;

  // ---- dependencies: every threshold on work issued before the command -------------------
  assign ld_ready = macs_done >= ld_need_macs && stores_done >= ld_need_stores;
  assign pe_ready = loads_done >= pe_need_loads && drains_started >= pe_need_drains;
  assign dr_ready = macs_rows_final >= dr_need_macs && stores_done >= dr_need_store;
  // the store reads its block from the output buffer in its last cycle (bitmod_memory): it
  // may start once its drain has started and will have ended by then
  assign st_ready = drains_started >= st_need_drains
      && (drains_done >= st_need_drains || dr_left < st_cycles) && loads_done >= st_need_loads;

  // ---- the DRAM channel: one transfer at a time; a waiting load before a waiting store ----
  logic        channel_free, ld_request, st_request;
  assign channel_free = !ld_busy && !st_busy;
  assign ld_request = ld_waiting && ld_ready;
  assign st_request = st_waiting && st_ready;
  assign ld_grant = channel_free && ld_request;
  assign st_grant = channel_free && st_request && !ld_request;

  // ---- the engines ------------------------------------------------------------------------
  bitmod_engine #(.W(LD_W)) load_engine (
    .clk(clk), .rst(rst), .issue(ld_issue), .issue_payload(ld_payload), .full(ld_full),
    .pending(), .accept(), .has_current(ld_has), .current(ld_current), .ready(ld_ready),
    .grant(ld_grant), .duration(ld_cycles), .last(1'b0), .start(ld_start), .busy(ld_busy),
    .finishing(), .waiting(ld_waiting), .done(ld_done), .left());
  bitmod_engine #(.W(PE_W), .FIXED(1'b0)) pe_control (
    .clk(clk), .rst(rst), .issue(pe_issue), .issue_payload(pe_payload), .full(pe_full),
    .pending(), .accept(), .has_current(pe_has), .current(pe_current), .ready(pe_ready),
    .grant(1'b1), .duration(32'd0), .last(pe_last), .start(pe_start), .busy(pe_busy),
    .finishing(), .waiting(pe_waiting), .done(pe_done), .left());
  bitmod_engine #(.W(DR_W)) drain_control (
    .clk(clk), .rst(rst), .issue(dr_issue), .issue_payload(dr_payload), .full(dr_full),
    .pending(dr_pending), .accept(dr_accept), .has_current(dr_has), .current(dr_current),
    .ready(dr_ready), .grant(1'b1), .duration(dr_cycles), .last(1'b0), .start(dr_start),
    .busy(dr_busy), .finishing(), .waiting(dr_waiting), .done(dr_done), .left(dr_left));
  bitmod_engine #(.W(ST_W)) store_engine (
    .clk(clk), .rst(rst), .issue(st_issue), .issue_payload(st_payload), .full(st_full),
    .pending(), .accept(), .has_current(st_has), .current(st_current), .ready(st_ready),
    .grant(st_grant), .duration(st_cycles), .last(1'b0), .start(st_start), .busy(st_busy),
    .finishing(), .waiting(st_waiting), .done(st_done), .left());

  always_ff @(posedge clk) begin
    if (rst) begin
      {loads_done, macs_done, drains_started, drains_done, stores_done} <= '0;
      macs_rows_final <= '0;
    end else begin
      if (ld_done) loads_done <= loads_done + 32'd1;
      if (pe_done) macs_done <= macs_done + 32'd1;
      if (pe_rows_final) macs_rows_final <= macs_rows_final + 32'd1;
      if (dr_start) drains_started <= drains_started + 32'd1;
      if (dr_done) drains_done <= drains_done + 32'd1;
      if (st_done) stores_done <= stores_done + 32'd1;
    end
  end

  // ---- the PE engine, the drain engine and the memories ----------------------------------
  logic               act_fetch, code_fetch, meta_fetch, scale_fetch;
  logic [31:0]        act_fetch_address, code_bit, meta_bit;
  logic [ROW_SETS*ROWS-1:0]    act_row_valid;
  logic [3:0]                  act_lane_valid;
  logic [ROW_SETS*ROWS*64-1:0] act_data;
  logic [COLUMNS*32-1:0] codes, meta;
  logic [COLUMNS*16-1:0] channel_scales, drain_scale, biases, drain_y;
  logic [ROW_W-1:0]   drain_row, out_row;
  logic               out_write, out_slot;
  logic [3:0]         drain_lanes, out_groups, out_lanes;
  logic [31:0]        out_rows;

  bitmod_pe_engine #(
    .ROWS(ROWS), .COLS(COLS), .TILES(TILES), .ROW_GROUPS(ROW_GROUPS),
    .MAX_ROWS(MAX_BLOCK_ROWS), .PIPE(PIPE)
  ) pe_engine (
    .clk(clk), .rst(rst), .start(pe_start), .last(pe_last), .rows_final(pe_rows_final),
    .issuing(pe_issuing),
    .passes(pe_passes), .k_valid(pe_k), .group_size(pe_group), .terms(pe_terms), .sb(pe_sb),
    .clear(pe_clear), .act_address(pe_act_address), .act_row_stride(pe_act_stride),
    .act_rows(pe_act_rows), .weight_address(pe_w_base), .weight_stride(pe_w_stride),
    .weight_meta_byte(pe_meta_byte), .weight_scale_byte(pe_scale_byte),
    .weight_channels(pe_channels), .kind(pe_kind), .bits(pe_bits), .sv_enable(pe_sv_enable),
    .magnitudes(pe_magnitudes), .index_bits(pe_index_bits), .zero_bits(pe_zero_bits),
    .sv_regs(pe_sv), .act_fetch(act_fetch), .act_fetch_address(act_fetch_address),
    .act_row_valid(act_row_valid), .act_lane_valid(act_lane_valid), .act_data(act_data),
    .code_fetch(code_fetch), .code_bit(code_bit), .codes(codes), .meta_fetch(meta_fetch),
    .meta_bit(meta_bit), .meta(meta), .scale_fetch(scale_fetch), .act_error(act_error),
    .drain_row(drain_row), .drain_lanes(drain_lanes), .drain_scale(drain_scale),
    .drain_bias(biases),
    .drain_has_bias(dr_has_bias), .drain_y(drain_y));

  bitmod_drain_engine #(
    .ROWS(ROWS), .COLS(COLS), .TILES(TILES), .ROW_GROUPS(ROW_GROUPS), .MAX_ROWS(MAX_BLOCK_ROWS)
  ) drain_engine (
    .clk(clk), .start(dr_start), .busy(dr_busy), .rows(dr_rows), .channels(dr_channels),
    .out_slot_in(dr_slot), .duration(dr_cycles), .channel_scales(channel_scales),
    .drain_scale(drain_scale), .drain_row(drain_row), .drain_lanes(drain_lanes),
    .out_write(out_write), .out_slot(out_slot), .out_row(out_row), .out_groups(out_groups),
    .out_lanes(out_lanes), .out_rows(out_rows));

  bitmod_memory #(
    .DRAM_BYTES(DRAM_BYTES), .ACT_BYTES(ACT_BUFFER_BYTES), .WEIGHT_BYTES(WEIGHT_BUFFER_BYTES),
    .ROWS(ROWS), .COLS(COLS), .TILES(TILES), .ROW_SETS(ROW_SETS), .MAX_ROWS(MAX_BLOCK_ROWS)
  ) memory (
    .clk(clk), .dma_copy(ld_start || st_done),  // a store moves its block in its last cycle
    .dma_kind(st_done ? 2'd2 : {1'b0, ld_weight}),
    .dma_src(st_done ? st_src : ld_src),
    .dma_src_stride(st_done ? st_src_stride : ld_src_stride),
    .dma_dst(st_done ? st_dst : ld_dst),
    .dma_dst_stride(st_done ? st_dst_stride : ld_dst_stride),
    .dma_segment_bytes(st_done ? st_segment : ld_segment),
    .dma_segments(st_done ? st_segments : ld_segments),
    .act_fetch(act_fetch), .act_address(act_fetch_address), .act_row_stride(pe_act_stride),
    .act_row_valid(act_row_valid), .act_lane_valid(act_lane_valid), .act_data(act_data),
    .code_fetch(code_fetch), .weight_address(pe_w_base), .weight_stride(pe_w_stride),
    .code_bit(code_bit), .bits(pe_bits), .codes(codes), .meta_fetch(meta_fetch),
    .meta_byte(pe_meta_byte), .meta_bit(meta_bit), .meta(meta), .scale_fetch(scale_fetch),
    .scale_byte(pe_scale_byte), .channel_scales(channel_scales), .out_write(out_write),
    .out_slot(out_slot), .out_row(out_row), .out_groups(out_groups), .out_lanes(out_lanes),
    .out_rows(out_rows), .out_data(drain_y),
    .bias_fetch(dr_accept), .bias_address(next_bias_address), .bias_valid(next_bias_columns),
    .biases(biases));

  // ---- the run's cycles, by what the PE array does --------------------------------------
  assign done = error || (halted && !ld_has && !ld_full && !pe_has && !pe_full && !dr_has
                          && !dr_full && !st_has && !st_full);
  always_ff @(posedge clk) begin
    if (rst) begin
      {cycles, cycles_compute, cycles_dequant_tail, cycles_drain, cycles_dram_stall,
       cycles_other} <= '0;
    end else if (running && !done) begin
      cycles <= cycles + 32'd1;
      if (pe_start || pe_busy) begin
        if (pe_issuing) cycles_compute <= cycles_compute + 32'd1;
        else cycles_dequant_tail <= cycles_dequant_tail + 32'd1;
      end else if (pe_has) begin
        if (loads_done < pe_need_loads) cycles_dram_stall <= cycles_dram_stall + 32'd1;
        else cycles_drain <= cycles_drain + 32'd1;
      end else if (dr_has || dr_full) cycles_drain <= cycles_drain + 32'd1;
      else if (ld_has || ld_full || st_has || st_full)
        cycles_dram_stall <= cycles_dram_stall + 32'd1;
      else cycles_other <= cycles_other + 32'd1;
    end
  end
endmodule
