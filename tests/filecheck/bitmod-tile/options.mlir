// Options: a smaller array, a forced K chunk, loop order and block rows, a batched
// activation; a matmul whose weight is still a float tensor stays as it is (it runs on the
// host).
// RUN: bitmod-opt %s -p 'bitmod-tile{rows=4 cols=4 tiles=2 kchunk=64 order=k-streamed block-rows=4}' | filecheck %s
// RUN: bitmod-opt %s --pass-pipeline='builtin.module(bitmod-tile{rows=4 cols=4 tiles=2 kchunk=64 order=k-streamed block-rows=4})' | filecheck %s
// RUN: bitmod-opt %s -p 'bitmod-tile{rows=4 cols=4 tiles=2 kchunk=64 order=k-streamed block-rows=4}' | bitmod-opt - | filecheck %s
// A forced chunk larger than K is K.
// RUN: bitmod-opt %s -p 'bitmod-tile{kchunk=4096}' | filecheck %s --check-prefix=WHOLE
// Blocks of 12 rows (3 passes of the 4-row array) and the activations resident.
// RUN: bitmod-opt %s -p 'bitmod-tile{rows=4 cols=4 tiles=2 kchunk=64 order=acts-resident block-rows=12}' | filecheck %s --check-prefix=ACTS

func.func @f(%x: tensor<2x5x128xf32>, %h: tensor<3x16xf32>, %v: tensor<20x16xf32>) -> (tensor<2x5x20xf32>, tensor<3x20xf32>) {
  %w = bitmod.param "a.weight" : tensor<20x128xf32>
  %q = bitmod.quantize %w into "a.weight" : tensor<20x128xf32> -> !bitmod.qweight<20x128, int4, 32>
  %y = bitmod.matmul %x, %q : (tensor<2x5x128xf32>, !bitmod.qweight<20x128, int4, 32>) -> tensor<2x5x20xf32>
  %z = bitmod.matmul %h, %v : (tensor<3x16xf32>, tensor<20x16xf32>) -> tensor<3x20xf32>
  func.return %y, %z : tensor<2x5x20xf32>, tensor<3x20xf32>
}

// The batched [2, 5, 128] activation is a [10, 128] matrix: ceil(10/4) = 3 row blocks;
// 20 channels in blocks of 4*2 = 8: 3; K = 128 in chunks of 64: 2.
// Activation block 4 x 64 x 2 = 512 B; weight block 8 channels x (64 x 4 / 8 = 32 B codes
// + 2 groups x 8 scale bits = 2 B + 2 B channel scale) = 8 x 36 = 288 B. The last row
// block has 2 rows and the last column block 4 channels: with both loops counting down
// (loop.down) they run first, 890 cycles against 906 counting up, 896 with the row loop alone
// down and 900 with the column loop alone (the planner's exact timing; the four read the same
// bytes, so the fastest wins).
// CHECK:      %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 4, cols = 4, tiles = 2, block_rows = 4, kc = 64, act_kc = 64, m_blocks = 3, n_blocks = 3, k_chunks = 2, act_block_bytes = 512, weight_block_bytes = 288> : (tensor<2x5x128xf32>, !bitmod.qweight<20x128, int4, 32>) -> tensor<2x5x20xf32> {
// CHECK-NEXT:   bsisa.loop.down L0 count 3 {
// CHECK-NEXT:     bsisa.loop.down L1 count 3 {
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.loop L2 count 2 {
// CHECK:            bsisa.drain{{$}}
// CHECK:      %z = bitmod.matmul %h, %v : (tensor<3x16xf32>, tensor<20x16xf32>) -> tensor<3x20xf32>

// Default array, K chunk 4096 clipped to K = 128: one chunk. One column block (N = 20 <=
// 128), so every order reads each operand once and the first, weights-resident, is kept.
// The 20 channels fill 3 of the 16 tiles, so groups of 4 tiles run 4 row passes at once
// (row groups): one 16-row block of 2 passes is one sweep, fewer macs than two 8-row
// blocks. A block takes the buffer space of a whole block even where the tensor clips it:
// activation 16 x 128 x 2 = 4096 B; weight 128 channels x (64 B codes + 4 groups x 8 bits
// = 4 B + 2 B) = 8960 B.
// WHOLE: bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 16, kc = 128, act_kc = 128, m_blocks = 1, n_blocks = 1, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 8960>
// WHOLE-NEXT: bsisa.loop L0 count 1 {
// WHOLE-NEXT:   bsisa.ld.wgt @weight col L0 k -

// One 12-row block of all of K (12 x 128 x 2 = 3072 B) with cfg.mblock-sized rows; the
// weight's two K chunks stream past it for each of the 3 column blocks, the column loop
// counting down (its narrow last block first: fewer cycles for the same bytes).
// ACTS: tiling #bsisa.tiling<rows = 4, cols = 4, tiles = 2, block_rows = 12, kc = 64, act_kc = 128, m_blocks = 1, n_blocks = 3, k_chunks = 2, act_block_bytes = 3072, weight_block_bytes = 288>
// ACTS-NEXT:   bsisa.loop L0 count 1 {
// ACTS-NEXT:     bsisa.ld.act @act row L0 k -
// ACTS-NEXT:     bsisa.loop.down L1 count 3 {
// ACTS-NEXT:       bsisa.acc.clr
// ACTS-NEXT:       bsisa.loop L2 count 2 {
// ACTS-NEXT:         bsisa.ld.wgt @weight col L1 k L2
// ACTS-NEXT:         bsisa.mac
// ACTS-NEXT:       }
// ACTS-NEXT:       bsisa.drain{{$}}
// ACTS-NEXT:       bsisa.st.out @out row L0 col L1
