// Test bench wrapper: format decode, term count and one column's term encoder.
module term_encoder_tb (
  input  logic        clk,
  input  logic [7:0]  fmt,
  input  logic        load,
  input  logic [31:0] codes,
  input  logic [3:0]  lane_valid,
  input  logic [7:0]  zero,
  input  logic [1:0]  sv_index,
  input  logic [63:0] sv_regs,
  input  logic [3:0]  term,
  output logic        accelerated,
  output logic [3:0]  terms,
  output logic [3:0]  sign,
  output logic [15:0] exp,
  output logic [3:0]  man,
  output logic [3:0]  bsig
);
  logic [1:0]  kind;
  logic [3:0]  bits, min_terms;
  logic        sv_enable;
  logic [1:0]  index_bits;
  logic [39:0] magnitudes;

  bitmod_fmt_decode decode (
    .fmt(fmt), .accelerated(accelerated), .kind(kind), .bits(bits), .sv_enable(sv_enable),
    .index_bits(index_bits), .min_terms(min_terms), .magnitudes(magnitudes));
  bitmod_term_count count (
    .min_terms(min_terms), .sv_enable(sv_enable), .sv_regs(sv_regs), .terms(terms));
  bitmod_term_encoder encoder (
    .clk(clk), .enable(1'b1), .load(load), .codes(codes), .lane_valid(lane_valid), .zero(zero),
    .sv_index(sv_index), .sv_regs(sv_regs), .kind(kind), .bits(bits), .sv_enable(sv_enable),
    .magnitudes(magnitudes), .term(term), .sign(sign), .exp(exp), .man(man), .bsig(bsig));
endmodule
