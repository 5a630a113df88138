// The bit-serial term encoder (BitMoD paper Sec. IV-A; runtime/formats/bitserial.py): stored
// codes -> integer grid values -> one term (-1)^s * 2^exp * man * 2^bsig per cycle.
//
// * INT / asymmetric INT (after subtracting the zero point): radix-4 Booth, term t is the digit
//   of bits (2t+1, 2t, 2t-1), bsig = 2t.
// * sign-magnitude FP3/FP4 and their ER/EA extensions: the code's magnitude (in grid units of
//   the format's fixed point), or, for the redundant negative-zero code of a format with
//   special values, the group's entry of the programmable 4-entry SV register; the terms are
//   its set bits, highest first (one leading-one detection a cycle on the remainder), bsig 0.
//
// A format is described by the generated bitmod_fmt_pkg (one descriptor per format id, from
// runtime/formats/registry.py); bitmod_fmt_decode unpacks it.

module bitmod_fmt_decode (
  input  logic [7:0]  fmt,
  output logic        accelerated,
  output logic [1:0]  kind,
  output logic [3:0]  bits,
  output logic        sv_enable,
  output logic [1:0]  index_bits,
  output logic [3:0]  min_terms,
  output logic [39:0] magnitudes
);
  logic [bitmod_fmt_pkg::DESC_W-1:0] desc;

  always_comb begin
    desc = '0;
    if (32'(fmt) < bitmod_fmt_pkg::N_FORMATS)
      desc = bitmod_fmt_pkg::DESC[fmt * bitmod_fmt_pkg::DESC_W +: bitmod_fmt_pkg::DESC_W];
  end

  assign kind = desc[bitmod_fmt_pkg::KIND_LO +: 2];
  assign accelerated = kind != 2'(bitmod_fmt_pkg::KIND_NONE);
  assign bits = desc[bitmod_fmt_pkg::BITS_LO +: 4];
  assign sv_enable = desc[bitmod_fmt_pkg::SV_LO];
  assign index_bits = desc[bitmod_fmt_pkg::INDEX_BITS_LO +: 2];
  assign min_terms = desc[bitmod_fmt_pkg::MIN_TERMS_LO +: 4];
  assign magnitudes = desc[bitmod_fmt_pkg::MAGNITUDES_LO +: 40];
endmodule

// Terms per weight (cycles per 4-MAC step): bitmod_arith_pkg::term_count.
module bitmod_term_count #(parameter int SV_BITS = 16) (
  input  logic [3:0]           min_terms,
  input  logic                 sv_enable,
  input  logic [4*SV_BITS-1:0] sv_regs,
  output logic [3:0]           terms
);
  assign terms = bitmod_arith_pkg::term_count(min_terms, sv_enable, sv_regs);
endmodule

// One lane: decodes its code on `load` (the first term of a step) and emits term `term` each
// cycle; the value (Booth) or the remaining magnitude (LOD) is held between the cycles of a step.
module bitmod_term_lane #(parameter int SV_BITS = 16) (
  input  logic               clk,
  input  logic               enable,      // a term cycle (the state holds otherwise)
  input  logic               load,
  input  logic [7:0]         code,
  input  logic [7:0]         zero,
  input  logic [SV_BITS-1:0] sv_value,
  input  logic               lane_valid,  // inside the tensor; outside, the value is 0
  input  logic [1:0]         kind,
  input  logic [3:0]         bits,
  input  logic               sv_enable,
  input  logic [39:0]        magnitudes,
  input  logic [3:0]         term,
  output logic               sign,
  output logic [3:0]         exp,
  output logic               man,
  output logic [3:0]         bsig
);
  localparam int BOOTH_BITS = bitmod_arith_pkg::BOOTH_BITS;

  logic signed [BOOTH_BITS-1:0] booth_decoded, booth_held, booth_value;
  logic [SV_BITS-1:0] magnitude_decoded, remainder, magnitude;
  logic               negative_decoded, negative_held;
  logic [2:0]         triple;
  logic [6:0]         top;

  assign {booth_decoded, negative_decoded, magnitude_decoded} = lane_valid
      ? bitmod_arith_pkg::lane_value(code, zero, sv_value, kind, bits, sv_enable, magnitudes)
      : '0;

  // this cycle's term: Booth digit `term`, or the leading one of what is left
  assign booth_value = load ? booth_decoded : booth_held;
  assign triple = 3'({booth_value, 1'b0} >> {term, 1'b0});
  assign magnitude = load ? magnitude_decoded : remainder;
  assign top = bitmod_arith_pkg::top_bit(64'(magnitude));

  assign man = (kind == 2'(bitmod_fmt_pkg::KIND_LOD)) ? magnitude != '0
                                                      : triple != 3'b000 && triple != 3'b111;
  assign sign = (kind == 2'(bitmod_fmt_pkg::KIND_LOD))
      ? magnitude != '0 && (load ? negative_decoded : negative_held)
      : triple[2] && triple != 3'b111;
  assign exp = (kind == 2'(bitmod_fmt_pkg::KIND_LOD)) ? 4'(top)
                                                      : {3'd0, triple == 3'b011 || triple == 3'b100};
  assign bsig = (kind == 2'(bitmod_fmt_pkg::KIND_LOD)) ? 4'd0 : {term[2:0], 1'b0};

  always_ff @(posedge clk) begin
    if (enable && load) begin
      booth_held <= booth_decoded;
      negative_held <= negative_decoded;
    end
    if (enable) remainder <= magnitude & ~(SV_BITS'(1) << top);
  end
endmodule

// The encoder of one PE column: four lanes (four consecutive K elements of one output channel,
// so one group: one zero point and one SV index).
module bitmod_term_encoder #(parameter int SV_BITS = 16) (
  input  logic                 clk,
  input  logic                 enable,
  input  logic                 load,
  input  logic [31:0]          codes,       // lane i in [8i+7:8i]
  input  logic [3:0]           lane_valid,
  input  logic [7:0]           zero,
  input  logic [1:0]           sv_index,
  input  logic [4*SV_BITS-1:0] sv_regs,
  input  logic [1:0]           kind,
  input  logic [3:0]           bits,
  input  logic                 sv_enable,
  input  logic [39:0]          magnitudes,
  input  logic [3:0]           term,
  output logic [3:0]           sign,
  output logic [15:0]          exp,         // lane i in [4i+3:4i]
  output logic [3:0]           man,
  output logic [3:0]           bsig         // shared by the lanes of a step
);
  logic [15:0] lane_bsig;
  logic [SV_BITS-1:0] sv_value;

  assign sv_value = sv_regs[sv_index*SV_BITS +: SV_BITS];

  for (genvar lane = 0; lane < 4; lane++) begin : lanes
    bitmod_term_lane #(.SV_BITS(SV_BITS)) encoder (
      .clk(clk), .enable(enable), .load(load), .code(codes[lane*8 +: 8]), .zero(zero), .sv_value(sv_value),
      .lane_valid(lane_valid[lane]), .kind(kind), .bits(bits), .sv_enable(sv_enable),
      .magnitudes(magnitudes), .term(term), .sign(sign[lane]), .exp(exp[lane*4 +: 4]),
      .man(man[lane]), .bsig(lane_bsig[lane*4 +: 4]));
  end

  assign bsig = lane_bsig[3:0];
endmodule
