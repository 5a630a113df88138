// The whole back end: bitmod IR -> program -> text assembly (docs/ISA.md syntax) and
// binary; the binary, decoded and disassembled by bitmod.runtime.isa, gives the same text.
// FP4-EA- has the one special value -16.
// RUN: bitmod-opt %s -p 'bitmod-tile{tiles=4 kchunk=256},bitmod-lower-to-isa' --emit=asm | filecheck %s
// RUN: bitmod-opt %s -p 'bitmod-tile{tiles=4 kchunk=256},bitmod-lower-to-isa' --emit=bin -o %t.bin
// RUN: %python -c "import sys; from bitmod.runtime.isa import Program; print(Program.decode(open(sys.argv[1], 'rb').read()).to_asm())" %t.bin | filecheck %s

func.func @gate(%x: tensor<3x256xf32>) -> tensor<3x40xf32> {
  %w = bitmod.param "gate.weight" : tensor<40x256xf32>
  %q = bitmod.quantize %w into "gate.weight" : tensor<40x256xf32> -> !bitmod.qweight<40x256, fp4_ea_neg, 128>
  %y = bitmod.matmul %x, %q : (tensor<3x256xf32>, !bitmod.qweight<40x256, fp4_ea_neg, 128>) -> tensor<3x40xf32>
  func.return %y : tensor<3x40xf32>
}

// CHECK:      .desc d0 act "x" 3x256
// CHECK-NEXT: .desc d1 qweight "gate.weight" 40x256 fmt=fp4_ea_neg sb=8 g=128
// CHECK-NEXT: .desc d2 out "result0" 3x40
// CHECK-NEXT: cfg.array rows=8 cols=8 tiles=4
// CHECK-NEXT: cfg.fmt fmt=fp4_ea_neg sb=8 g=128
// CHECK-NEXT: cfg.sv slot=0 value=-16
// CHECK-NEXT: cfg.kchunk 256
// Each weight block (32 channels, then the last 8) is loaded once and the 3 activation rows
// (one block, all of K) stream past it; the act buffer still holds them for the second
// weight block (a hit): each operand is read once, and weights-resident is the first order
// of equals. The column loop counts down: the 8-channel block's short load first, then the
// 32-channel block's while it computes (438 cycles; 539 counting up).
// CHECK-NEXT: loop.down L0 count=2
// CHECK-NEXT:   ld.wgt d1 col=L0 k=-
// CHECK-NEXT:   loop L1 count=1
// CHECK-NEXT:     acc.clr
// CHECK-NEXT:     ld.act d0 row=L1 k=-
// CHECK-NEXT:     mac
// CHECK-NEXT:     drain bias=-
// CHECK-NEXT:     st.out d2 row=L1 col=L0
// CHECK-NEXT:   endloop L1
// CHECK-NEXT: endloop L0
// CHECK-NEXT: halt
