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
// RUN: not bitmod-opt %s -p 'bitmod-tile{block-rows=136}' 2>&1 | filecheck %s --check-prefix=BLOCKROWS
// RUN: not bitmod-opt %s -p 'bitmod-tile{max-block-rows=4}' 2>&1 | filecheck %s --check-prefix=MAXROWS
// RUN: not bitmod-opt %s -p 'bitmod-tile{row-groups=3}' -o %t.out 2>&1 | filecheck %s --check-prefix=ROWGROUPS
// RUN: not test -e %t.out
// RUN: bitmod-opt %s -p 'bitmod-tile{order=k-streamed}' | filecheck %s --check-prefix=STREAMED
// RUN: not bitmod-opt %s -p 'bitmod-tile{dram-bytes-per-cycle=0}' 2>&1 | filecheck %s --check-prefix=DRAM
// RUN: not bitmod-opt %S/k-chunks.mlir -p 'bitmod-tile{dram-bytes-per-cycle=1e-300}' 2>&1 | filecheck %s --check-prefix=TINY
// RUN: not bitmod-opt %s -p 'bitmod-tile{dram-bytes-per-cycle=1e999}' 2>&1 | filecheck %s --check-prefix=HUGE
// RUN: not bitmod-opt %s -p 'bitmod-tile{act-buffer=100000000000000000000000}' 2>&1 | filecheck %s --check-prefix=BIGINT
// RUN: not bitmod-opt %s -p 'bitmod-tile{act-buffer=1e23}' 2>&1 | filecheck %s --check-prefix=NOTINT
// RUN: not bitmod-opt %S/Inputs/one-group.mlir -p 'bitmod-tile{order=k-streamed}' 2>&1 | filecheck %s --check-prefix=ONEGROUP
// RUN: bitmod-opt %s -p 'bitmod-tile{order=k-streamed kchunk=128}' | filecheck %s --check-prefix=STREAMED

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
// GROUP: errors.mlir:30:3: error: 'bitmod.matmul' op bitmod-tile: K chunk 96 is not a multiple of the group size 128
// One group (a block is 128 channels even though N = 64): 128 x (64 B codes + 10 bits of
// scale and SV index -> 2 B + 2 B) = 8704 B; twice that exceeds 4096 B.
// WEIGHT: errors.mlir:30:3: error: 'bitmod.matmul' op bitmod-tile: the weight block of one group (128 along K) takes 8704 B; double-buffered it does not fit the 4096 B weight buffer
// ACT: errors.mlir:30:3: error: 'bitmod.matmul' op bitmod-tile: the activation block of one group (128 along K) takes 2048 B; double-buffered it does not fit the 1024 B activation buffer
// Activation 8 x 256 x 2 = 4096 B; weight 128 x (128 + ceil(20/8) + 2) = 17024 B.
// FORCED: error: 'bitmod.matmul' op bitmod-tile: a K chunk of 256 does not fit: double-buffered activation block 2x4096 B (buffer 524288 B), weight block 2x17024 B (buffer 16384 B)
// ORDER: error: pass 'bitmod-tile': order 'sideways' is not a loop order; valid: auto, weights-resident, acts-resident, k-streamed, k-streamed-rows{{$}}
// BLOCKROWS: error: pass 'bitmod-tile': block-rows: blocks of {{12|136}} rows must be a multiple of the 8 PE rows and at most the 128 rows the column accumulators hold
// MAXROWS: error: pass 'bitmod-tile': max-block-rows: 4 rows hold less than one pass of the 8 PE rows
// ROWGROUPS: <pass-pipeline>:1:1: error: pass 'bitmod-tile': row-groups: row groups must be a power of two (1, 2, 4, ...), got 3
// K = 256 is one chunk of the default buffers; k-streamed of this small GEMM streams chunks of
// one group, chosen or forced (a GEMM too large to time exactly still gets the error saying
// that all of K fits one chunk).
// STREAMED: tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 128, act_kc = 128, m_blocks = 1, n_blocks = 1, k_chunks = 2,
// ONEGROUP: one-group.mlir:6:3: error: 'bitmod.matmul' op bitmod-tile: k-streamed needs K in two or more chunks of whole groups, but K = 64 is a single group (G = 64); use another loop order
// DRAM: error: pass 'bitmod-tile': dram-bytes-per-cycle must be positive, got 0
// A positive but tiny bandwidth is a number (it was "expects int|float"); the predicted
// cycles of the Llama projection of k-chunks.mlir overflow at it.
// TINY: <pass-pipeline>:1:1: error: pass 'bitmod-tile': the machine these options describe: HardwareConfig.dram_bytes_per_cycle: DRAM bandwidth must be at least 1/65536 bytes per cycle, got 1e-300
// HUGE: <pass-pipeline>:1:1: error: pass 'bitmod-tile': option 'dram-bytes-per-cycle' = 1e999 is not a finite number
// BIGINT: <pass-pipeline>:1:1: error: pass 'bitmod-tile': option 'act-buffer' = 100000000000000000000000 does not fit 64 bits
// NOTINT: <pass-pipeline>:1:1: error: pass 'bitmod-tile': option 'act-buffer' expects int, got '1e23'
// NOTINT-NOT: Traceback
