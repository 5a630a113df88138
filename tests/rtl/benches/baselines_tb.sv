// Test bench wrapper: the FP16 MAC PE, and the FIGNA-like aligner feeding its integer PE.
module baselines_tb (
  input  logic               clk,
  input  logic               rst,
  input  logic               valid,
  input  logic               clear,
  input  logic [15:0]        a,
  input  logic [15:0]        b,
  output logic [31:0]        fp16_acc,
  input  logic [15:0]        h,
  input  logic signed [7:0]  group_exp,
  input  logic signed [7:0]  w,
  output logic signed [14:0] aligned,
  output logic signed [39:0] figna_acc
);
  fp16_mac_pe fp16 (.clk(clk), .rst(rst), .valid(valid), .clear(clear), .a(a), .b(b),
    .acc(fp16_acc));
  figna_align align (.h(h), .group_exp(group_exp), .a(aligned));
  figna_pe figna (.clk(clk), .rst(rst), .valid(valid), .clear(clear), .a(aligned), .w(w),
    .acc(figna_acc));
endmodule
