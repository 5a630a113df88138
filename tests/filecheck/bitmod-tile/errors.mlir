// Option and capacity errors: one diagnostic each, exit status 1, no output file.
// RUN: not bitmod-opt %s -p 'bitmod-tile{dataflow=ws}' -o %t.out 2>&1 | filecheck %s --check-prefix=DATAFLOW
// RUN: not test -e %t.out
// RUN: not bitmod-opt %s -p 'bitmod-tile{rows=0}' 2>&1 | filecheck %s --check-prefix=ROWS
// RUN: not bitmod-opt %s -p 'bitmod-tile{cols=-8}' 2>&1 | filecheck %s --check-prefix=COLS
// RUN: not bitmod-opt %s -p 'bitmod-tile{tiles=70000}' 2>&1 | filecheck %s --check-prefix=TILES
// RUN: not bitmod-opt %s -p 'bitmod-tile{kchunk=96}' -o %t.out 2>&1 | filecheck %s --check-prefix=GROUP
// RUN: not test -e %t.out
// RUN: not bitmod-opt %s -p 'bitmod-tile{weight-buffer=4096}' 2>&1 | filecheck %s --check-prefix=WEIGHT
// RUN: not bitmod-opt %s -p 'bitmod-tile{act-buffer=1024}' 2>&1 | filecheck %s --check-prefix=ACT
// RUN: not bitmod-opt %s -p 'bitmod-tile{kchunk=256 weight-buffer=16384}' 2>&1 | filecheck %s --check-prefix=FORCED
// RUN: not bitmod-opt %s -p 'bitmod-tile{order=sideways}' 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: not bitmod-opt %s -p 'bitmod-tile{block-rows=12}' 2>&1 | filecheck %s --check-prefix=BLOCKROWS
// RUN: not bitmod-opt %s -p 'bitmod-tile{block-rows=128}' 2>&1 | filecheck %s --check-prefix=BLOCKROWS
// RUN: not bitmod-opt %s -p 'bitmod-tile{max-block-rows=4}' 2>&1 | filecheck %s --check-prefix=MAXROWS
// RUN: not bitmod-opt %s -p 'bitmod-tile{order=k-streamed}' 2>&1 | filecheck %s --check-prefix=NOCHUNKS
// RUN: not bitmod-opt %s -p 'bitmod-tile{dram-bytes-per-cycle=0}' 2>&1 | filecheck %s --check-prefix=DRAM

func.func @f(%x: tensor<8x256xf32>) -> tensor<8x64xf32> {
  %w = bitmod.param "fc.weight" : tensor<64x256xf32>
  %q = bitmod.quantize %w into "fc.weight" : tensor<64x256xf32> -> !bitmod.qweight<64x256, bitmod4, 128>
  %y = bitmod.matmul %x, %q : (tensor<8x256xf32>, !bitmod.qweight<64x256, bitmod4, 128>) -> tensor<8x64xf32>
  func.return %y : tensor<8x64xf32>
}

// DATAFLOW: <pass-pipeline>:1:1: error: pass 'bitmod-tile': dataflow 'ws' is not supported; the array is output-stationary: dataflow=os
// DATAFLOW-NOT: Traceback
// ROWS: error: pass 'bitmod-tile': rows must be positive, got 0
// COLS: error: pass 'bitmod-tile': cols must be positive, got -8
// TILES: error: pass 'bitmod-tile': bad array geometry: cfg.array: field tiles=70000 out of range
// GROUP: errors.mlir:22:3: error: 'bitmod.matmul' op bitmod-tile: K chunk 96 is not a multiple of the group size 128
// One group (a block is 128 channels even though N = 64): 128 x (64 B codes + 10 bits of
// scale and SV index -> 2 B + 2 B) = 8704 B; twice that exceeds 4096 B.
// WEIGHT: errors.mlir:22:3: error: 'bitmod.matmul' op bitmod-tile: the weight block of one group (128 along K) takes 8704 B; double-buffered it does not fit the 4096 B weight buffer
// ACT: errors.mlir:22:3: error: 'bitmod.matmul' op bitmod-tile: the activation block of one group (128 along K) takes 2048 B; double-buffered it does not fit the 1024 B activation buffer
// Activation 8 x 256 x 2 = 4096 B; weight 128 x (128 + ceil(20/8) + 2) = 17024 B.
// FORCED: error: 'bitmod.matmul' op bitmod-tile: a K chunk of 256 does not fit: double-buffered activation block 2x4096 B (buffer 524288 B), weight block 2x17024 B (buffer 16384 B)
// ORDER: error: pass 'bitmod-tile': order 'sideways' is not a loop order; valid: auto, weights-resident, acts-resident, k-streamed
// BLOCKROWS: error: pass 'bitmod-tile': block-rows: blocks of {{12|128}} rows must be a multiple of the 8 PE rows and at most the 64 rows the column accumulators hold
// MAXROWS: error: pass 'bitmod-tile': max-block-rows 4 is less than rows 8
// K = 256 is one chunk of the default buffers, and streaming needs several.
// NOCHUNKS: error: 'bitmod.matmul' op bitmod-tile: no k-streamed with 8-row blocks fits the 524288 B activation and 524288 B weight buffers
// DRAM: error: pass 'bitmod-tile': dram-bytes-per-cycle must be positive, got 0
