// An MLP whose first K (200) the group size (128) does not divide runs the whole default
// pipeline: the last group of each row holds 72 weights (no padding), the qweight keeps
// K = 200, and the planner streams it in chunks of 128 + 72 (k-streamed: one row block and
// one column block, so the first mac waits for 128 of K, not all of it); the second
// layer's K = 64 < G is one group of 64.
// A forced K chunk of 128 splits K into 128 + 72. tests/test_ragged_compile.py runs the
// binary of this file on the emulator against the scalar reference PE.
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod,bitmod-quantize | filecheck %s --check-prefix=QUANT
// RUN: bitmod-opt %s --pipeline bitmod-default | filecheck %s
// RUN: bitmod-opt %s -p 'convert-linalg-to-bitmod,bitmod-quantize,bitmod-tile{kchunk=128},bitmod-lower-to-isa' | filecheck %s --check-prefix=CHUNKS
// RUN: rm -rf %t.dir && mkdir -p %t.dir
// RUN: bitmod-opt %s --pipeline bitmod-default --emit bin -o %t.dir/mlp.bin
// RUN: test -s %t.dir/mlp.bin && test -s %t.dir/mlp.params.safetensors

func.func @mlp(%x: tensor<4x200xf32>) -> tensor<4x24xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %w1 = arith.constant dense<2.500000e-02> : tensor<200x64xf32>
  %w2 = arith.constant dense<-1.250000e-01> : tensor<64x24xf32>
  %e1 = tensor.empty() : tensor<4x64xf32>
  %a1 = linalg.fill ins(%zero : f32) outs(%e1 : tensor<4x64xf32>) -> tensor<4x64xf32>
  %h = linalg.matmul ins(%x, %w1 : tensor<4x200xf32>, tensor<200x64xf32>) outs(%a1 : tensor<4x64xf32>) -> tensor<4x64xf32>
  %e2 = tensor.empty() : tensor<4x24xf32>
  %a2 = linalg.fill ins(%zero : f32) outs(%e2 : tensor<4x24xf32>) -> tensor<4x24xf32>
  %y = linalg.matmul ins(%h, %w2 : tensor<4x64xf32>, tensor<64x24xf32>) outs(%a2 : tensor<4x24xf32>) -> tensor<4x24xf32>
  func.return %y : tensor<4x24xf32>
}

// QUANT: bitmod.quantize %{{.*}} into "fc1.weight" : tensor<64x200xf32> -> !bitmod.qweight<64x200, bitmod3, 128>
// QUANT: bitmod.quantize %{{.*}} into "fc2.weight" : tensor<24x64xf32> -> !bitmod.qweight<24x64, bitmod3, 64>

// CHECK: bsisa.desc @d0 act "x" [4, 200]
// CHECK-NEXT: bsisa.desc @d1 qweight "fc1.weight" [64, 200] fmt "bitmod3" sb 8 g 128
// CHECK: bsisa.desc @d4 qweight "fc2.weight" [24, 64] fmt "bitmod3" sb 8 g 64
// CHECK: bsisa.cfg.fmt "bitmod3" sb 8 g 128
// CHECK: bsisa.cfg.kchunk 128
// CHECK: bsisa.ld.wgt @d1 col L0 k L2
// CHECK: bsisa.mac
// CHECK: bsisa.cfg.fmt "bitmod3" sb 8 g 64
// CHECK: bsisa.cfg.kchunk 64
// CHECK: bsisa.halt

// CHUNKS: bsisa.cfg.kchunk 128
// CHUNKS: bsisa.loop L2 count 2 {
// CHUNKS-NEXT: bsisa.ld.act @d0 row L1 k L2
// CHUNKS-NEXT: bsisa.ld.wgt @d1 col L0 k L2
// CHUNKS-NEXT: bsisa.mac
