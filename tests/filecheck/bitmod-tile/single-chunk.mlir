// One quantized matmul with bias, default options (8x8 PEs, 16 tiles, 512 KiB buffers,
// column accumulators 128 rows deep). K = 256 fits one chunk (forced with kchunk=256: the
// planner itself streams chunks of one group, whose smaller first block starts the array sooner).
// RUN: bitmod-opt %s -p 'bitmod-tile{kchunk=256}' | filecheck %s
// The tiled output parses back (tests/test_lowering.py round-trips every input here).
// RUN: bitmod-opt %s -p 'bitmod-tile{kchunk=256}' | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s -p 'bitmod-tile{order=weights-resident block-rows=8}' | filecheck %s --check-prefix=WEIGHTS

func.func @forward(%x: tensor<16x256xf32>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  %w = bitmod.param "fc1.weight" : tensor<192x256xf32>
  %q = bitmod.quantize %w into "fc1.weight" : tensor<192x256xf32> -> !bitmod.qweight<192x256, bitmod3, 128>
  %y = bitmod.matmul %x, %q bias %b : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>, tensor<192xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}

// N = 192 channels in blocks of 8*16 = 128: 2. Weight block: 128 channels x (256 x 3 code
// bits / 8 = 96 B + 2 groups x (8 scale + 2 SV index bits) / 8 -> 3 B + 2 B channel scale)
// = 128 x 101 = 12928 B. The GEMM is memory-bound (a few hundred MAC cycles, ~36 KB to
// move), so the plan reading the fewest bytes wins: each weight block is loaded once per
// column block and the one activation block of all 16 rows (two array passes a mac;
// 16 x 256 x 2 = 8192 B) streams past it; for the second column block the act buffer still
// holds that block (a hit, no transfer), so every byte is read once, and weights-resident is
// the first order of equals. With 8-row blocks (WEIGHTS below) the two act blocks are hits
// for the second column block too.
// CHECK:      %[[Q:.*]] = bitmod.quantize %w into "fc1.weight"
// CHECK-NEXT: %y = bsisa.tiled_matmul %x, %[[Q]] bias %b tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 16, kc = 256, act_kc = 256, m_blocks = 1, n_blocks = 2, k_chunks = 1, act_block_bytes = 8192, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>, tensor<192xf32>) -> tensor<16x192xf32> {
// CHECK-NEXT:   bsisa.loop L0 count 2 {
// CHECK-NEXT:     bsisa.ld.wgt @weight col L0 k -
// CHECK-NEXT:     bsisa.loop L1 count 1 {
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.ld.act @act row L1 k -
// CHECK-NEXT:       bsisa.mac
// CHECK-NEXT:       bsisa.drain bias @bias
// CHECK-NEXT:       bsisa.st.out @out row L1 col L0
// CHECK-NEXT:     }
// CHECK-NEXT:   }
// CHECK-NEXT: }
// CHECK-NEXT: func.return %y : tensor<16x192xf32>

// Forced: the weight block is loaded once per column block (outside the row loop) and the
// 8-row activation blocks (8 x 256 x 2 = 4096 B) stream past it; K level '-': all of K.
// WEIGHTS:      tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928>
// WEIGHTS-NEXT:   bsisa.loop L0 count 2 {
// WEIGHTS-NEXT:     bsisa.ld.wgt @weight col L0 k -
// WEIGHTS-NEXT:     bsisa.loop L1 count 2 {
// WEIGHTS-NEXT:       bsisa.acc.clr
// WEIGHTS-NEXT:       bsisa.ld.act @act row L1 k -
// WEIGHTS-NEXT:       bsisa.mac
// WEIGHTS-NEXT:       bsisa.drain bias @bias
// WEIGHTS-NEXT:       bsisa.st.out @out row L1 col L0
// WEIGHTS-NEXT:     }
// WEIGHTS-NEXT:   }
// WEIGHTS-NEXT: }
