// A Llama-2-7B down projection (N = 4096, K = 11008) at M = 256 tokens. No weight block of
// all of K fits, so K is cut into balanced chunks.
// RUN: bitmod-opt %s -p bitmod-tile | filecheck %s
// RUN: bitmod-opt %s -p bitmod-tile | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s -p 'bitmod-tile{order=k-streamed block-rows=8}' | filecheck %s --check-prefix=ROWS8

func.func @down(%h: tensor<256x11008xf32>) -> tensor<256x4096xf32> {
  %w = bitmod.param "down.weight" : tensor<4096x11008xf32>
  %q = bitmod.quantize %w into "down.weight" : tensor<4096x11008xf32> -> !bitmod.qweight<4096x11008, bitmod3, 128>
  %y = bitmod.matmul %h, %q : (tensor<256x11008xf32>, !bitmod.qweight<4096x11008, bitmod3, 128>) -> tensor<256x4096xf32>
  func.return %y : tensor<256x4096xf32>
}

// Weight block of g groups (KC = 128 g) for 128 channels: W = 128 (48 g + ceil(10 g / 8)
// + 2) bytes (3-bit codes, 8 scale + 2 SV-index bits a group, 2 B channel scale).
// 2 W <= 524288 needs 48 g + ceil(1.25 g) + 2 <= 2048: at most g = 41 groups. K has 86.
// An activation block of all of K holds at most 23 rows (11008 x 2 B a row), so keeping
// the activations resident re-reads the 17.4 MB weight 16 times (16-row blocks); streaming
// both in chunks with 128-row blocks (the deepest the accumulators hold) reads the 5.6 MB
// activation once per column block (32x) and the weight once per 128 rows (2x): 215 MB
// instead of 284 MB (250 MB with 64-row blocks), and the GEMM is memory-bound. 128-row
// activation chunks, double-buffered, hold at most 512 KiB / (2 x 128 x 2 B) = 1024 K
// elements = 8 groups: ceil(86/8) = 11 chunks, balanced to ceil(86/11) = 8 groups, KC = 1024.
// Activation block 128 x 1024 x 2 = 262144 B; W = 128 x (384 + 10 + 2) = 50688 B.
// CHECK:      bsisa.tiled_matmul %h, %{{.*}} tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 128, kc = 1024, act_kc = 1024, m_blocks = 2, n_blocks = 32, k_chunks = 11, act_block_bytes = 262144, weight_block_bytes = 50688>
// CHECK-NEXT:   bsisa.loop L0 count 32 {
// CHECK-NEXT:     bsisa.loop L1 count 2 {
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.loop L2 count 11 {
// CHECK-NEXT:         bsisa.ld.act @act row L1 k L2
// CHECK-NEXT:         bsisa.ld.wgt @weight col L0 k L2
// CHECK-NEXT:         bsisa.mac
// CHECK-NEXT:       }
// CHECK-NEXT:       bsisa.drain
// CHECK-NEXT:       bsisa.st.out @out row L1 col L0
// CHECK-NEXT:     }
// CHECK-NEXT:   }
// CHECK-NEXT: }

// With 8-row blocks the activation chunk is small and the weight limits the chunk:
// ceil(86/41) = 3 chunks, balanced to ceil(86/3) = 29 groups, KC = 3712 (the last chunk
// is clipped to 11008 - 2*3712 = 3584). W = 128 x (1392 + 37 + 2) = 183168 B; activation
// block 8 x 3712 x 2 = 59392 B.
// ROWS8: tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 3712, act_kc = 3712, m_blocks = 32, n_blocks = 32, k_chunks = 3, act_block_bytes = 59392, weight_block_bytes = 183168>
