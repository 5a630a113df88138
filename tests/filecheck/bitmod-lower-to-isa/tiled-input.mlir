// The pass on its own, on what bitmod-tile produces: the schedule moves into the program
// unchanged, its role names (@act, @weight, @bias, @out) replaced by descriptors.
// RUN: bitmod-opt %s -p bitmod-lower-to-isa | filecheck %s
// RUN: bitmod-opt %s -p bitmod-lower-to-isa | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s | bitmod-opt - | filecheck %s --check-prefix=INPUT

func.func @layer(%tokens: tensor<2x4x512xf32>, %bias: tensor<256xf32>) -> tensor<2x4x256xf32> {
  %w = bitmod.param "proj.weight" : tensor<256x512xf32>
  %q = bitmod.quantize %w into "proj.weight" : tensor<256x512xf32> -> !bitmod.qweight<256x512, bitmod4, 128>
  %out = bsisa.tiled_matmul %tokens, %q bias %bias tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 8, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 1, n_blocks = 4, k_chunks = 2, act_block_bytes = 4096, weight_block_bytes = 8512> : (tensor<2x4x512xf32>, !bitmod.qweight<256x512, bitmod4, 128>, tensor<256xf32>) -> tensor<2x4x256xf32> {
    bsisa.loop L0 count 4 {
      bsisa.loop L1 count 1 {
        bsisa.acc.clr
        bsisa.loop L2 count 2 {
          bsisa.ld.act @act row L1 k L2
          bsisa.ld.wgt @weight col L0 k L2
          bsisa.mac
        }
        bsisa.drain bias @bias
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %out : tensor<2x4x256xf32>
}

// INPUT: bsisa.tiled_matmul %tokens, %q bias %bias tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 8, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 1, n_blocks = 4, k_chunks = 2, act_block_bytes = 4096, weight_block_bytes = 8512>
// INPUT: bsisa.ld.wgt @weight col L0 k L2

// The batched [2, 4, 512] activation is the [8, 512] matrix "tokens"; the returned value
// is "result0". BitMoD-4's special values are +10, -10, +16, -16.
// CHECK:      func.func @layer(%tokens: tensor<2x4x512xf32>, %bias: tensor<256xf32>) -> tensor<2x4x256xf32> {
// CHECK-NEXT:   %out = bsisa.launch @program[0] act @d0(%tokens) bias @d3(%bias) out @d2 : (tensor<2x4x512xf32>, tensor<256xf32>) -> tensor<2x4x256xf32>
// CHECK-NEXT:   func.return %out : tensor<2x4x256xf32>
// CHECK-NEXT: }
// CHECK-NEXT: bsisa.program @program {
// CHECK-NEXT:   bsisa.desc @d0 act "tokens" [8, 512]
// CHECK-NEXT:   bsisa.desc @d1 qweight "proj.weight" [256, 512] fmt "bitmod4" sb 8 g 128
// CHECK-NEXT:   bsisa.desc @d2 out "result0" [8, 256]
// CHECK-NEXT:   bsisa.desc @d3 bias "bias" [256]
// CHECK-NEXT:   bsisa.cfg.array rows 8 cols 8 tiles 8
// CHECK-NEXT:   bsisa.cfg.fmt "bitmod4" sb 8 g 128
// CHECK-NEXT:   bsisa.cfg.sv slot 0 value 10
// CHECK-NEXT:   bsisa.cfg.sv slot 1 value -10
// CHECK-NEXT:   bsisa.cfg.sv slot 2 value 16
// CHECK-NEXT:   bsisa.cfg.sv slot 3 value -16
// CHECK-NEXT:   bsisa.cfg.kchunk 256
// CHECK-NEXT:   bsisa.loop L0 count 4 {
// CHECK-NEXT:     bsisa.loop L1 count 1 {
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.loop L2 count 2 {
// CHECK-NEXT:         bsisa.ld.act @d0 row L1 k L2
// CHECK-NEXT:         bsisa.ld.wgt @d1 col L0 k L2
// CHECK-NEXT:         bsisa.mac
// CHECK-NEXT:       }
// CHECK-NEXT:       bsisa.drain bias @d3
// CHECK-NEXT:       bsisa.st.out @d2 row L1 col L0
// CHECK-NEXT:     }
// CHECK-NEXT:   }
// CHECK-NEXT:   bsisa.halt
// CHECK-NEXT: }
