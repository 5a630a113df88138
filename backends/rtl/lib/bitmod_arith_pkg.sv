// The arithmetic of the BitMoD datapath as functions (docs/ISA.md, "PE arithmetic"): the PE's
// 4-lane step, the group accumulator's rounding, the dequantized value, the FP32 column
// accumulator and the drain. Every rounding is to nearest even. Operands are finite: the PE has
// no Inf/NaN (activations with an all-ones exponent are refused before a mac; channel scales
// and biases are checked when the memory image is written).
//
// Functions rather than always_comb blocks: the algorithms assign defaults and then refine them,
// which Icarus 11 mis-schedules in an always_comb (it re-runs the block, and the blocks reading
// it, without end); a function's locals are invisible to the scheduler. No `return` statements
// (Yosys 0.23): each function assigns its result to its name.
package bitmod_arith_pkg;
  localparam int ACC_BITS = 64;      // the group accumulator: sign + 63 bits, LSB 2^-27
  localparam int PRODUCT_BITS = 41;  // round24(A) * scale code: |.| <= 2^24 * 2^14
  localparam int SHIFT_BITS = 7;     // exponents of the accumulator and the product (LSB units)
  localparam int SB_MAX = 15;        // scale bits
  localparam int SV_BITS = 16;       // special values (int16)
  localparam int BOOTH_BITS = 10;    // a 9-bit asymmetric difference q - z, and its sign

  // Position of the most significant set bit (0 when v is 0): a binary search, six halvings
  // (as a loop over the 64 bits, Verilator emits 64 branches at each of its ~30 uses a tile).
  function automatic logic [6:0] top_bit(input logic [63:0] v);
    logic [63:0] x;
    x = v;
    top_bit = '0;
    if (x[63:32] != 32'd0) begin
      top_bit[5] = 1'b1;
      x = x >> 32;
    end
    if (x[31:16] != 16'd0) begin
      top_bit[4] = 1'b1;
      x = x >> 16;
    end
    if (x[15:8] != 8'd0) begin
      top_bit[3] = 1'b1;
      x = x >> 8;
    end
    if (x[7:4] != 4'd0) begin
      top_bit[2] = 1'b1;
      x = x >> 4;
    end
    if (x[3:2] != 2'd0) begin
      top_bit[1] = 1'b1;
      x = x >> 2;
    end
    top_bit[0] = x[1];
  endfunction

  // round(v / 2^s) to nearest even, v < 2^63.
  function automatic logic [63:0] rne_shift(input logic [63:0] v, input logic [6:0] s);
    logic [63:0] kept, lost, half;
    kept = v >> s;
    lost = v & ((64'd1 << s) - 64'd1);
    half = (s == 7'd0) ? 64'd0 : 64'd1 << (s - 7'd1);
    rne_shift = kept + {63'd0, s != 7'd0 && (lost > half || (lost == half && kept[0]))};
  endfunction

  // --- the PE ------------------------------------------------------------------------------

  // One cycle of the 4-lane dot product (steps 1-3): lane i is the 1-bit weight mantissa times
  // the 11-bit FP16 mantissa at exponent e_i = ea_i + exp_i; lanes are aligned to the largest
  // exponent E of the non-zero lanes with 3 guard bits and rounded to nearest even, then summed
  // exactly. Result {D (17-bit signed), E - 3 + bsig + 27 (the accumulator shift)}.
  function automatic logic [23:0] pe_step(
      input logic [63:0] act,      // lane i in [16i+15:16i]
      input logic [3:0]  w_sign,
      input logic [15:0] w_exp,    // lane i in [4i+3:4i]
      input logic [3:0]  w_man,
      input logic [3:0]  bsig);
    logic signed [7:0]  exponent [4];
    logic [10:0]        mantissa [4];
    logic [3:0]         live;
    logic signed [7:0]  largest;
    logic [7:0]         distance;
    logic [63:0]        aligned;
    logic signed [16:0] d;
    logic [6:0]         shift;
    largest = -8'sd128;
    for (int lane = 0; lane < 4; lane++) begin
      mantissa[lane] = {act[16*lane+10 +: 5] != 5'd0, act[16*lane +: 10]};
      exponent[lane] = ((act[16*lane+10 +: 5] != 5'd0)
                        ? $signed({3'd0, act[16*lane+10 +: 5]}) - 8'sd25 : -8'sd24)
                     + $signed({4'd0, w_exp[4*lane +: 4]});
      live[lane] = w_man[lane] && mantissa[lane] != 11'd0;
      if (live[lane] && exponent[lane] > largest) largest = exponent[lane];
    end
    d = '0;
    for (int lane = 0; lane < 4; lane++) begin
      distance = 8'(largest - exponent[lane]);
      aligned = rne_shift({50'd0, mantissa[lane], 3'b000}, (distance > 8'd15) ? 7'd15 : distance[6:0]);
      if (live[lane]) begin
        if (act[16*lane+15] ^ w_sign[lane]) d = d - $signed({2'b00, aligned[14:0]});
        else d = d + $signed({2'b00, aligned[14:0]});
      end
    end
    shift = (live != 4'd0) ? 7'(largest + 8'sd24 + $signed({4'd0, bsig})) : 7'd0;
    pe_step = {d, shift};
  endfunction

  // The group accumulator rounded to 24 significant bits (step 5):
  // A ~ (-1)^negative * mantissa * 2^shift, mantissa <= 2^24. Result {negative, mantissa, shift}.
  function automatic logic [32:0] round24(input logic [ACC_BITS-1:0] acc);
    logic [63:0] magnitude;
    logic [6:0]  top, shift;
    logic [63:0] kept;
    magnitude = acc[ACC_BITS-1] ? -acc : acc;
    top = top_bit(magnitude);
    shift = (top > 7'd23) ? top - 7'd23 : 7'd0;
    kept = rne_shift(magnitude, shift);
    round24 = {acc[ACC_BITS-1], kept[24:0], shift};
  endfunction

  // fp32(product * 2^(shift - 27)): the dequantized group value. Normal or +0.
  function automatic logic [31:0] fix_to_fp32(
      input logic [PRODUCT_BITS-1:0] product, input logic [6:0] shift);
    logic [PRODUCT_BITS-1:0] narrow;
    logic [63:0] magnitude, kept;
    logic [6:0]  top, drop;
    logic [8:0]  exponent;
    narrow = product[PRODUCT_BITS-1] ? -product : product;
    magnitude = 64'(narrow);
    top = top_bit(magnitude);
    drop = (top > 7'd23) ? top - 7'd23 : 7'd0;
    kept = (top > 7'd23) ? rne_shift(magnitude, drop) : magnitude << (7'd23 - top);
    // the leading one of kept is bit 23 (bit 24 after a rounding carry)
    exponent = {2'd0, top} + {2'd0, shift} + 9'd100 + {8'd0, kept[24]};
    if (magnitude == 64'd0) fix_to_fp32 = 32'd0;
    else if (kept[24]) fix_to_fp32 = {product[PRODUCT_BITS-1], exponent[7:0], 23'd0};
    else fix_to_fp32 = {product[PRODUCT_BITS-1], exponent[7:0], kept[22:0]};
  endfunction

  // The PE's registers as one state word, and one clock edge of the PE (bitmod_pe is one of
  // them; bitmod_tile keeps an array of them and steps it in a loop, so that a simulator
  // compiles the PE once per tile rather than once per PE). Fields, LSB first:
  localparam int PE_ACC_LO = 0;                               // A (stage A)
  localparam int PE_D_LO = PE_ACC_LO + ACC_BITS;              // D (stage M), 17 bits signed
  localparam int PE_SHIFT_LO = PE_D_LO + 17;                  // D's accumulator shift
  localparam int PE_VALID_LO = PE_SHIFT_LO + SHIFT_BITS;      // stage M holds a term
  localparam int PE_LAST_LO = PE_VALID_LO + 1;                // ... a group's last
  localparam int PE_SCALE_M_LO = PE_LAST_LO + 1;              // the group's scale code (M)
  localparam int PE_SCALE_Q_LO = PE_SCALE_M_LO + SB_MAX;      // ... in the dequantizer
  localparam int PE_REMAINING_LO = PE_SCALE_Q_LO + SB_MAX;    // dequantizer cycles left
  localparam int PE_READY_LO = PE_REMAINING_LO + 4;           // product final (a cycle late)
  localparam int PE_GROUP_SUM_LO = PE_READY_LO + 1;           // the last group's A (tests)
  localparam int PE_MULTIPLICAND_LO = PE_GROUP_SUM_LO + ACC_BITS;  // +-round24(A)
  localparam int PE_PRODUCT_SHIFT_LO = PE_MULTIPLICAND_LO + PRODUCT_BITS;
  localparam int PE_PRODUCT_LO = PE_PRODUCT_SHIFT_LO + SHIFT_BITS;
  localparam int PE_STATE_BITS = PE_PRODUCT_LO + PRODUCT_BITS;

  // The state after a clock edge with these inputs (bitmod_pe.sv describes the PE): stage M
  // registers the step of the term presented now; stage A accumulates the registered step and,
  // at the group's last term, hands A (rounded to 24 bits) to the dequantizer, which multiplies
  // it by the scale code one bit a cycle, most significant first.
  function automatic logic [PE_STATE_BITS-1:0] pe_next(
      input logic [PE_STATE_BITS-1:0] state,
      input logic              rst,
      input logic              valid,       // a term cycle
      input logic              last,        // ... the group's last
      input logic [63:0]       act,
      input logic [3:0]        w_sign,
      input logic [15:0]       w_exp,
      input logic [3:0]        w_man,
      input logic [3:0]        bsig,
      input logic [SB_MAX-1:0] scale_code,  // the group's, with `last`
      input logic [3:0]        sb);
    logic [ACC_BITS-1:0]     acc, sum;
    logic [16:0]             d_m;
    logic [SHIFT_BITS-1:0]   shift_m, rounded_shift;
    logic                    valid_m, last_m, negative, scale_bit;
    logic [SB_MAX-1:0]       scale_m, scale_q;
    logic [3:0]              remaining;
    logic [PRODUCT_BITS-1:0] multiplicand, product, widened;
    logic [24:0]             mantissa;
    logic [23:0]             step;
    acc = state[PE_ACC_LO +: ACC_BITS];
    d_m = state[PE_D_LO +: 17];
    shift_m = state[PE_SHIFT_LO +: SHIFT_BITS];
    valid_m = state[PE_VALID_LO];
    last_m = state[PE_LAST_LO];
    scale_m = state[PE_SCALE_M_LO +: SB_MAX];
    scale_q = state[PE_SCALE_Q_LO +: SB_MAX];
    remaining = state[PE_REMAINING_LO +: 4];
    multiplicand = state[PE_MULTIPLICAND_LO +: PRODUCT_BITS];
    product = state[PE_PRODUCT_LO +: PRODUCT_BITS];
    sum = acc + (ACC_BITS'($signed(d_m)) << shift_m);
    {negative, mantissa, rounded_shift} = round24(sum);
    widened = {{(PRODUCT_BITS - 25){1'b0}}, mantissa};
    scale_bit = scale_q[remaining - 4'd1];
    pe_next = state;
    if (rst) begin
      pe_next[PE_ACC_LO +: ACC_BITS] = '0;
      pe_next[PE_VALID_LO] = 1'b0;
      pe_next[PE_LAST_LO] = 1'b0;
      pe_next[PE_REMAINING_LO +: 4] = 4'd0;
      pe_next[PE_READY_LO] = 1'b0;
    end else begin
      // stage M: the step
      pe_next[PE_VALID_LO] = valid;
      pe_next[PE_LAST_LO] = valid && last;
      step = pe_step(act, w_sign, w_exp, w_man, bsig);
      pe_next[PE_D_LO +: 17] = step[23:7];
      pe_next[PE_SHIFT_LO +: SHIFT_BITS] = step[6:0];
      if (valid && last) pe_next[PE_SCALE_M_LO +: SB_MAX] = scale_code;
      // stage A: accumulate; at the group's end hand A to the dequantizer
      if (valid_m) pe_next[PE_ACC_LO +: ACC_BITS] = last_m ? '0 : sum;
      pe_next[PE_READY_LO] = remaining == 4'd1;
      if (valid_m && last_m) begin
        pe_next[PE_GROUP_SUM_LO +: ACC_BITS] = sum;
        pe_next[PE_MULTIPLICAND_LO +: PRODUCT_BITS] = negative ? -widened : widened;
        pe_next[PE_PRODUCT_SHIFT_LO +: SHIFT_BITS] = rounded_shift;
        pe_next[PE_PRODUCT_LO +: PRODUCT_BITS] = '0;
        pe_next[PE_SCALE_Q_LO +: SB_MAX] = scale_m;
        pe_next[PE_REMAINING_LO +: 4] = sb;
      end else if (remaining != 4'd0) begin
        if (remaining == sb) pe_next[PE_PRODUCT_LO +: PRODUCT_BITS] = scale_bit ? -multiplicand : '0;
        else pe_next[PE_PRODUCT_LO +: PRODUCT_BITS] = (product << 1) + (scale_bit ? multiplicand : '0);
        pe_next[PE_REMAINING_LO +: 4] = remaining - 4'd1;
      end
    end
  endfunction

  // --- IEEE FP32 / FP16 --------------------------------------------------------------------

  // a + b in FP32; subnormal operands and results are handled, an exact zero sum is +0 unless
  // both addends are -0, overflow gives Inf.
  function automatic logic [31:0] fp32_add(input logic [31:0] a, input logic [31:0] b);
    logic [31:0] big, other;
    logic [7:0]  e_big, e_other, gap, left, exponent;
    logic [26:0] x_big, x_other, aligned, norm;
    logic [27:0] total;
    logic [6:0]  top;
    logic [24:0] rounded;
    logic [8:0]  field;
    if (a[30:0] < b[30:0]) begin
      big = b;
      other = a;
    end else begin
      big = a;
      other = b;
    end
    e_big = (big[30:23] == 8'd0) ? 8'd1 : big[30:23];
    e_other = (other[30:23] == 8'd0) ? 8'd1 : other[30:23];
    x_big = {big[30:23] != 8'd0, big[22:0], 3'b000};
    x_other = {other[30:23] != 8'd0, other[22:0], 3'b000};
    gap = e_big - e_other;
    // align the smaller operand: guard and round bits, and a sticky bit for all that is lost
    if (gap >= 8'd27) aligned = {26'd0, x_other != 27'd0};
    else aligned = (x_other >> gap) | {26'd0, (x_other & ((27'd1 << gap[4:0]) - 27'd1)) != 27'd0};
    if (big[31] == other[31]) total = {1'b0, x_big} + {1'b0, aligned};
    else total = {1'b0, x_big} - {1'b0, aligned};
    top = top_bit({36'd0, total});
    exponent = e_big;
    norm = total[26:0];
    if (total[27]) begin
      norm = {total[27:2], total[1] | total[0]};
      exponent = e_big + 8'd1;
    end else if (total != 28'd0 && top != 7'd26) begin
      // normalize left, but not below the smallest exponent (the result is then subnormal)
      left = 8'd26 - {1'b0, top};
      if (left > e_big - 8'd1) left = e_big - 8'd1;
      norm = total[26:0] << left;
      exponent = e_big - left;
    end
    rounded = {1'b0, norm[26:3]} + {24'd0, norm[2] & (norm[1] | norm[0] | norm[3])};
    if (rounded[24]) field = {1'b0, exponent} + 9'd1;
    else if (rounded[23]) field = {1'b0, exponent};
    else field = 9'd0;  // subnormal
    if (total == 28'd0) fp32_add = {big[31] & other[31], 31'd0};
    else if (field >= 9'd255) fp32_add = {big[31], 8'hFF, 23'd0};
    else if (rounded[24]) fp32_add = {big[31], field[7:0], 23'd0};
    else fp32_add = {big[31], field[7:0], rounded[22:0]};
  endfunction

  // a * b in FP32 (finite operands, subnormals included): results below the normal range are
  // rounded to subnormals, overflow gives Inf.
  function automatic logic [31:0] fp32_mul(input logic [31:0] a, input logic [31:0] b);
    logic [7:0]  ea, eb;
    logic [63:0] product, kept;
    logic [6:0]  top;
    logic signed [10:0] drop, exponent;
    logic        sign;
    sign = a[31] ^ b[31];
    ea = (a[30:23] == 8'd0) ? 8'd1 : a[30:23];
    eb = (b[30:23] == 8'd0) ? 8'd1 : b[30:23];
    product = {40'd0, a[30:23] != 8'd0, a[22:0]} * {40'd0, b[30:23] != 8'd0, b[22:0]};
    top = top_bit(product);
    // value = product * 2^(ea + eb - 300): keep 24 bits, fewer below the normal range (whose
    // last bit is 2^-149)
    drop = $signed({4'd0, top}) - 11'sd23;
    if (11'sd151 - $signed({3'd0, ea}) - $signed({3'd0, eb}) > drop)
      drop = 11'sd151 - $signed({3'd0, ea}) - $signed({3'd0, eb});
    if (drop > 11'sd49) drop = 11'sd49;
    if (drop <= 11'sd0) kept = product << 7'(-drop);
    else kept = rne_shift(product, 7'(drop));
    if (kept[24]) begin
      kept = kept >> 1;  // a rounding carry: exact
      drop = drop + 11'sd1;
    end
    exponent = drop + $signed({3'd0, ea}) + $signed({3'd0, eb}) - 11'sd150;
    if (product == 64'd0) fp32_mul = {sign, 31'd0};
    else if (!kept[23]) fp32_mul = {sign, 8'd0, kept[22:0]};
    else if (exponent >= 11'sd255) fp32_mul = {sign, 8'hFF, 23'd0};
    else fp32_mul = {sign, exponent[7:0], kept[22:0]};
  endfunction

  // FP16 -> FP32, exact (FP16 subnormals become FP32 normals; Inf/NaN keep their pattern).
  function automatic logic [31:0] fp16_to_fp32(input logic [15:0] h);
    logic [6:0] top;
    logic [9:0] fraction;
    top = top_bit({54'd0, h[9:0]});
    fraction = 10'(h[9:0] << (7'd10 - top));
    if (h[14:10] == 5'd31) fp16_to_fp32 = {h[15], 8'hFF, h[9:0], 13'd0};
    else if (h[14:10] != 5'd0) fp16_to_fp32 = {h[15], 3'd0, h[14:10], h[9:0], 13'd0} + {1'b0, 8'd112, 23'd0};
    else if (h[9:0] == 10'd0) fp16_to_fp32 = {h[15], 31'd0};
    else fp16_to_fp32 = {h[15], 8'd103 + {1'b0, top}, fraction, 13'd0};
  endfunction

  // FP32 -> FP16 (finite input): FP16 subnormals, overflow to Inf.
  function automatic logic [15:0] fp32_to_fp16(input logic [31:0] f);
    logic signed [9:0] exponent, drop;
    logic [63:0] kept;
    exponent = $signed({2'd0, f[30:23]}) - 10'sd127;
    drop = (exponent < -10'sd14) ? -exponent - 10'sd1 : 10'sd13;
    if (drop > 10'sd25) drop = 10'sd25;
    kept = rne_shift({40'd0, 1'b1, f[22:0]}, 7'(drop));
    if (f[30:23] == 8'd0) fp32_to_fp16 = {f[31], 15'd0};  // zero or an FP32 subnormal: far below
    else if (exponent < -10'sd14) fp32_to_fp16 = {f[31], 15'(kept)};  // subnormal (may round up)
    else if (exponent + 10'sd15 + {9'd0, kept[11]} >= 10'sd31) fp32_to_fp16 = {f[31], 5'h1F, 10'd0};
    else if (kept[11]) fp32_to_fp16 = {f[31], 5'(exponent + 10'sd16), 10'd0};
    else fp32_to_fp16 = {f[31], 5'(exponent + 10'sd15), kept[9:0]};
  endfunction

  // The drain of one output (step 6): fp16(fp32(C * fp32(c)) + fp32(bias)); without a bias the
  // sum is skipped (so a -0 product stays -0).
  function automatic logic [15:0] drain(
      input logic [31:0] column, input logic [15:0] channel_scale, input logic [15:0] bias,
      input logic has_bias);
    logic [31:0] scaled;
    scaled = fp32_mul(column, fp16_to_fp32(channel_scale));
    drain = fp32_to_fp16(has_bias ? fp32_add(scaled, fp16_to_fp32(bias)) : scaled);
  endfunction

  // --- the term encoder --------------------------------------------------------------------

  // A stored code -> its grid value: {Booth value (INT, asymmetric INT after the zero point),
  // negative, magnitude (sign-magnitude codes; the negative-zero code of a format with special
  // values reads the group's SV register entry)}.
  function automatic logic [BOOTH_BITS+SV_BITS:0] lane_value(
      input logic [7:0] code, input logic [7:0] zero, input logic [SV_BITS-1:0] sv_value,
      input logic [1:0] kind, input logic [3:0] bits, input logic sv_enable,
      input logic [39:0] magnitudes);
    logic [7:0] mask, index;
    logic       negative;
    logic signed [BOOTH_BITS-1:0] value;
    logic [SV_BITS-1:0] magnitude;
    mask = 8'((9'd1 << bits) - 9'd1);
    negative = code[3'(bits - 4'd1)];
    index = code & (mask >> 1);
    value = '0;
    magnitude = '0;
    if (kind == 2'(bitmod_fmt_pkg::KIND_INT))
      value = $signed({2'b00, code & mask}) - (negative ? $signed(BOOTH_BITS'(1) << bits) : 10'sd0);
    else if (kind == 2'(bitmod_fmt_pkg::KIND_INT_ASYM))
      value = $signed({2'b00, code & mask}) - $signed({2'b00, zero & mask});
    else if (sv_enable && negative && index == 8'd0) begin
      negative = sv_value[SV_BITS-1];
      magnitude = negative ? -sv_value : sv_value;
    end else magnitude = SV_BITS'(magnitudes[index[2:0]*5 +: 5]);
    lane_value = {value, negative, magnitude};
  endfunction

  // Terms per weight with the SV register (bitserial.num_terms): the format's own count, or
  // the most set bits of a programmed special value.
  function automatic logic [3:0] term_count(
      input logic [3:0] min_terms, input logic sv_enable, input logic [4*SV_BITS-1:0] sv_regs);
    logic [SV_BITS-1:0] magnitude;
    logic [4:0] ones;
    term_count = min_terms;
    for (int slot = 0; slot < 4; slot++) begin
      magnitude = sv_regs[slot*SV_BITS + SV_BITS-1] ? -sv_regs[slot*SV_BITS +: SV_BITS]
                                                     : sv_regs[slot*SV_BITS +: SV_BITS];
      ones = '0;
      for (int i = 0; i < SV_BITS; i++) ones = ones + {4'd0, magnitude[i]};
      if (sv_enable && {1'b0, term_count} < ones) term_count = ones[3:0];
    end
  endfunction

  // --- row groups (runtime/arch/rules.py, row_groups) --------------------------------------

  // {log2 S, log2 Wg} of a mac on a weight block of `channels` valid channels, `tiles` tiles
  // of `cols` columns and at most `limit` (a power of two) row groups: Wg the smallest power of
  // two with Wg * cols >= channels (at least 1), S the largest power of two with S <= limit
  // and S * Wg <= tiles. Comparisons with constants only (no division): the PE engine and the
  // drain engine each evaluate it on their command (docs/rtl.md, "The PE engine").
  function automatic logic [7:0] row_groups(
      input logic [31:0] channels, input logic [31:0] cols, input logic [31:0] tiles,
      input logic [31:0] limit);
    logic [3:0] lanes, groups;
    lanes = 4'd0;
    for (int i = 0; i < 15; i++)
      if ((64'(cols) << i) < 64'(channels)) lanes = 4'(i + 1);
    groups = 4'd0;
    for (int i = 1; i < 15; i++)
      if ((64'd1 << i) <= 64'(limit) && (64'd1 << (i + 32'(lanes))) <= 64'(tiles))
        groups = 4'(i);
    row_groups = {groups, lanes};
  endfunction
endpackage
