// Three quantized layers and a host op. fc1 (bitmod3, bias from the archive) feeds a host
// op (arith.addf), whose result feeds fc2 (int4: no special values); fc2 feeds fc3
// (fp3_er_pos: one special value) directly, so fc2's output and fc3's input are the same
// DRAM tensor. A matmul with a float weight stays on the host.
// RUN: bitmod-opt %s -p 'bitmod-tile{kchunk=256},bitmod-lower-to-isa' | filecheck %s
// RUN: bitmod-opt %s -p 'bitmod-tile{kchunk=256},bitmod-lower-to-isa' | bitmod-opt - | filecheck %s

func.func @mlp(%x: tensor<4x256xf32>, %skip: tensor<4x128xf32>, %v: tensor<8x128xf32>) -> (tensor<4x64xf32>, tensor<4x8xf32>) {
  %w1 = bitmod.param "fc1.weight" : tensor<128x256xf32>
  %q1 = bitmod.quantize %w1 into "fc1.weight" : tensor<128x256xf32> -> !bitmod.qweight<128x256, bitmod3, 128>
  %b1 = bitmod.param "fc1.bias" : tensor<128xf32>
  %h1 = bitmod.matmul %x, %q1 bias %b1 : (tensor<4x256xf32>, !bitmod.qweight<128x256, bitmod3, 128>, tensor<128xf32>) -> tensor<4x128xf32>
  %a1 = arith.addf %h1, %skip : tensor<4x128xf32>
  %w2 = bitmod.param "fc2.weight" : tensor<96x128xf32>
  %q2 = bitmod.quantize %w2 into "fc2.weight" : tensor<96x128xf32> -> !bitmod.qweight<96x128, int4, 64>
  %h2 = bitmod.matmul %a1, %q2 : (tensor<4x128xf32>, !bitmod.qweight<96x128, int4, 64>) -> tensor<4x96xf32>
  %w3 = bitmod.param "fc3.weight" : tensor<64x96xf32>
  %q3 = bitmod.quantize %w3 into "fc3.weight" : tensor<64x96xf32> -> !bitmod.qweight<64x96, fp3_er_pos, 32, sb=4>
  %y = bitmod.matmul %h2, %q3 : (tensor<4x96xf32>, !bitmod.qweight<64x96, fp3_er_pos, 32, sb=4>) -> tensor<4x64xf32>
  %z = bitmod.matmul %a1, %v : (tensor<4x128xf32>, tensor<8x128xf32>) -> tensor<4x8xf32>
  func.return %y, %z : tensor<4x64xf32>, tensor<4x8xf32>
}

// The host function: accelerator calls, the host op, the float matmul; the quantized
// weights are gone from it (the program names them).
// CHECK:      func.func @mlp(%x: tensor<4x256xf32>, %skip: tensor<4x128xf32>, %v: tensor<8x128xf32>) -> (tensor<4x64xf32>, tensor<4x8xf32>) {
// CHECK-NEXT:   %b1 = bitmod.param "fc1.bias" : tensor<128xf32>
// CHECK-NEXT:   %h1 = bsisa.launch @program[0] act @d0(%x) bias @d3(%b1) out @d2 : (tensor<4x256xf32>, tensor<128xf32>) -> tensor<4x128xf32>
// CHECK-NEXT:   %a1 = arith.addf %h1, %skip : tensor<4x128xf32>
// CHECK-NEXT:   %h2 = bsisa.launch @program[1] act @d4(%a1) out @d6 : (tensor<4x128xf32>) -> tensor<4x96xf32>
// CHECK-NEXT:   %y = bsisa.launch @program[2] act @d7(%h2) out @d9 : (tensor<4x96xf32>) -> tensor<4x64xf32>
// CHECK-NEXT:   %z = bitmod.matmul %a1, %v : (tensor<4x128xf32>, tensor<8x128xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:   func.return %y, %z : tensor<4x64xf32>, tensor<4x8xf32>
// CHECK-NEXT: }

// Descriptors in order of first use; "h2" is both fc2's out and fc3's act.
// CHECK-NEXT: bsisa.program @program {
// CHECK-NEXT:   bsisa.desc @d0 act "x" [4, 256]
// CHECK-NEXT:   bsisa.desc @d1 qweight "fc1.weight" [128, 256] fmt "bitmod3" sb 8 g 128
// CHECK-NEXT:   bsisa.desc @d2 out "h1" [4, 128]
// CHECK-NEXT:   bsisa.desc @d3 bias "fc1.bias" [128]
// CHECK-NEXT:   bsisa.desc @d4 act "a1" [4, 128]
// CHECK-NEXT:   bsisa.desc @d5 qweight "fc2.weight" [96, 128] fmt "int4" sb 8 g 64
// CHECK-NEXT:   bsisa.desc @d6 out "h2" [4, 96]
// CHECK-NEXT:   bsisa.desc @d7 act "h2" [4, 96]
// CHECK-NEXT:   bsisa.desc @d8 qweight "fc3.weight" [64, 96] fmt "fp3_er_pos" sb 4 g 32
// CHECK-NEXT:   bsisa.desc @d9 out "result0" [4, 64]

// Segment 0: BitMoD-3 loads SV[0..3] with the candidates' special values +3, -3, +6, -6.
// CHECK-NEXT:   bsisa.cfg.array rows 8 cols 8 tiles 16
// CHECK-NEXT:   bsisa.cfg.fmt "bitmod3" sb 8 g 128
// CHECK-NEXT:   bsisa.cfg.sv slot 0 value 3
// CHECK-NEXT:   bsisa.cfg.sv slot 1 value -3
// CHECK-NEXT:   bsisa.cfg.sv slot 2 value 6
// CHECK-NEXT:   bsisa.cfg.sv slot 3 value -6
// CHECK-NEXT:   bsisa.cfg.kchunk 256
// CHECK-NEXT:   bsisa.loop L0 count 1 {
// CHECK-NEXT:     bsisa.ld.wgt @d1 col L0 k -
// CHECK-NEXT:     bsisa.loop L1 count 1 {
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.ld.act @d0 row L1 k -
// CHECK-NEXT:       bsisa.mac
// CHECK-NEXT:       bsisa.drain bias @d3
// CHECK-NEXT:       bsisa.st.out @d2 row L1 col L0
// CHECK-NEXT:     }
// CHECK-NEXT:   }

// Segment 1: INT4 has no special values.
// CHECK-NEXT:   bsisa.cfg.array rows 8 cols 8 tiles 16
// CHECK-NEXT:   bsisa.cfg.fmt "int4" sb 8 g 64
// CHECK-NEXT:   bsisa.cfg.kchunk 128
// CHECK-NEXT:   bsisa.loop L0 count 1 {
// CHECK-NEXT:     bsisa.ld.wgt @d5 col L0 k -
// CHECK:            bsisa.ld.act @d4 row L1 k -
// CHECK:            bsisa.drain{{$}}
// CHECK-NEXT:       bsisa.st.out @d6 row L1 col L0

// Segment 2: FP3-ER+ has the one special value +3.
// CHECK:        bsisa.cfg.array rows 8 cols 8 tiles 16
// CHECK-NEXT:   bsisa.cfg.fmt "fp3_er_pos" sb 4 g 32
// CHECK-NEXT:   bsisa.cfg.sv slot 0 value 3
// CHECK-NEXT:   bsisa.cfg.kchunk 96
// CHECK:            bsisa.st.out @d9 row L1 col L0
// CHECK:        bsisa.halt
// CHECK-NEXT: }
