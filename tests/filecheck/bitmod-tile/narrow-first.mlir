// N = 129 output channels on 16 tiles of 8 columns: a full column block of 128 channels and a
// narrow one of 1. Counting the column loop down runs the narrow block first, so its loads
// come while nothing else can run and the full block's weights stream in during its macs;
// counting up, the narrow block's activations (37 x 1000 x 2 B = 74 KB, 2,891 cycles at
// 25.6 B/cycle) arrive after all the full block's compute, with nothing left to overlap.
// The planner times both on the machine's model: 9,173 cycles down, 10,741 up (bench/
// schedule_quality.py). The bound max(compute, DRAM) is the DRAM: 74,000 B of activations
// + 129 x (1000 + 8 + 2) B of INT8 weights + 9,546 B of outputs = 213,836 B = 8,353 cycles.
// RUN: bitmod-opt %s -p bitmod-tile | filecheck %s
// RUN: bitmod-opt %s -p bitmod-tile | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s -p bitmod-tile,bitmod-lower-to-isa --emit=asm | filecheck %s --check-prefix=ASM
// RUN: bitmod-opt %s -p bitmod-tile,bitmod-lower-to-isa --emit=bin -o %t.bin
// RUN: %python -c "import sys; from bitmod.runtime.isa import Program; print(Program.decode(open(sys.argv[1], 'rb').read()).to_asm())" %t.bin | filecheck %s --check-prefix=ASM

func.func @odd(%x: tensor<37x1000xf32>) -> tensor<37x129xf32> {
  %w = bitmod.param "odd.weight" : tensor<129x1000xf32>
  %q = bitmod.quantize %w into "odd.weight" : tensor<129x1000xf32> -> !bitmod.qweight<129x1000, int8, 128>
  %y = bitmod.matmul %x, %q : (tensor<37x1000xf32>, !bitmod.qweight<129x1000, int8, 128>) -> tensor<37x129xf32>
  func.return %y : tensor<37x129xf32>
}

// CHECK:      tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 40, kc = 128, act_kc = 128, m_blocks = 1, n_blocks = 2, k_chunks = 8, act_block_bytes = 10240, weight_block_bytes = 16768>
// CHECK-NEXT:   bsisa.loop.down L0 count 2 {
// CHECK-NEXT:     bsisa.loop L1 count 1 {
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.loop L2 count 8 {
// CHECK-NEXT:         bsisa.ld.act @act row L1 k L2
// CHECK-NEXT:         bsisa.ld.wgt @weight col L0 k L2
// CHECK-NEXT:         bsisa.mac
// CHECK-NEXT:       }
// CHECK-NEXT:       bsisa.drain
// CHECK-NEXT:       bsisa.st.out @out row L1 col L0
// CHECK-NEXT:     }
// CHECK-NEXT:   }

// ASM:      loop.down L0 count=2
// ASM-NEXT:   loop L1 count=1
// ASM:        endloop L1
// ASM-NEXT: endloop L0
// ASM-NEXT: halt
