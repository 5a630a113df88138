// Every bsisa op and attribute in the custom form (printed as written, with extra
// attributes, optional operands/properties present and absent, levels '-', an empty loop
// body) and in the generic form; both forms parse back to the same module.
// RUN: bitmod-opt %s | filecheck %s
// RUN: bitmod-opt %s | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC
// RUN: bitmod-opt %s --print-op-generic | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s --print-op-generic | bitmod-opt - --print-op-generic | filecheck %s --check-prefix=GENERIC

func.func @host(%x: tensor<16x256xf32>, %b: tensor<192xf32>, %w: tensor<192x256xf32>, %xb: tensor<2x16x256xf32>, %wb: tensor<2x192x256xf32>) -> tensor<16x192xf32> {
  %y = bsisa.launch @p[0] act @d0(%x) bias @d3(%b) out @d2 {note = "launch"} : (tensor<16x256xf32>, tensor<192xf32>) -> tensor<16x192xf32>
  %z = bsisa.launch @p[1] act @d0(%x) out @d2 : (tensor<16x256xf32>) -> tensor<16x192xf32>
  %r = bsisa.launch @p[1] act @d0(%x) weight @d1(%w : tensor<192x256xf32>) out @d2 : (tensor<16x256xf32>) -> tensor<16x192xf32>
  %rb = bsisa.launch @p[1] act @d0(%xb) weight @d1(%wb : tensor<2x192x256xf32>) out @d2 : (tensor<2x16x256xf32>) -> tensor<2x16x192xf32>
  func.return %y : tensor<16x192xf32>
}
func.func @tiled(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  %y = bsisa.tiled_matmul %x, %q bias %b tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> {note = "tiled"} : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>, tensor<192xf32>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain bias @bias
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}
bsisa.program @p strings ["x", "w", "y", "b", "unused"] attributes {note = "program"} {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128 {note = "desc"}
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.sv slot 0 value 3
  bsisa.cfg.sv slot 3 value -8192 {note = "sv"}
  bsisa.cfg.kchunk 128
  bsisa.cfg.mblock 8
  bsisa.nop
  bsisa.loop L0 count 2 attributes {note = "loop"} {
    bsisa.loop L1 count 2 {
      bsisa.acc.clr
      bsisa.loop L2 count 2 {
        bsisa.ld.act @d0 row L1 k L2
        bsisa.ld.wgt @d1 col L0 k L2
        bsisa.mac
      }
      bsisa.drain bias @d3
      bsisa.st.out @d2 row L1 col L0
    }
  }
  bsisa.loop L7 count 1 {
  ^bb0:
  }
  bsisa.loop.down L6 count 3 attributes {note = "down"} {
    bsisa.nop
  }
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 256
  bsisa.cfg.mblock 16
  bsisa.loop L0 count 2 {
    bsisa.ld.wgt @d1 col L0 k -
    bsisa.acc.clr
    bsisa.ld.act @d0 row - k -
    bsisa.mac
    bsisa.drain
    bsisa.st.out @d2 row - col L0
  }
  bsisa.halt
}

// CHECK:      builtin.module {
// CHECK-NEXT:   func.func @host(%x: tensor<16x256xf32>, %b: tensor<192xf32>, %w: tensor<192x256xf32>, %xb: tensor<2x16x256xf32>, %wb: tensor<2x192x256xf32>) -> tensor<16x192xf32> {
// CHECK-NEXT:     %y = bsisa.launch @p[0] act @d0(%x) bias @d3(%b) out @d2 {note = "launch"} : (tensor<16x256xf32>, tensor<192xf32>) -> tensor<16x192xf32>
// CHECK-NEXT:     %z = bsisa.launch @p[1] act @d0(%x) out @d2 : (tensor<16x256xf32>) -> tensor<16x192xf32>
// CHECK-NEXT:     %r = bsisa.launch @p[1] act @d0(%x) weight @d1(%w : tensor<192x256xf32>) out @d2 : (tensor<16x256xf32>) -> tensor<16x192xf32>
// CHECK-NEXT:     %rb = bsisa.launch @p[1] act @d0(%xb) weight @d1(%wb : tensor<2x192x256xf32>) out @d2 : (tensor<2x16x256xf32>) -> tensor<2x16x192xf32>
// CHECK-NEXT:     func.return %y : tensor<16x192xf32>
// CHECK-NEXT:   }
// CHECK-NEXT:   func.func @tiled(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
// CHECK-NEXT:     %y = bsisa.tiled_matmul %x, %q bias %b tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> {note = "tiled"} : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>, tensor<192xf32>) -> tensor<16x192xf32> {
// CHECK-NEXT:       bsisa.loop L0 count 2 {
// CHECK-NEXT:         bsisa.ld.wgt @weight col L0 k -
// CHECK-NEXT:         bsisa.loop L1 count 2 {
// CHECK-NEXT:           bsisa.acc.clr
// CHECK-NEXT:           bsisa.ld.act @act row L1 k -
// CHECK-NEXT:           bsisa.mac
// CHECK-NEXT:           bsisa.drain bias @bias
// CHECK-NEXT:           bsisa.st.out @out row L1 col L0
// CHECK-NEXT:         }
// CHECK-NEXT:       }
// CHECK-NEXT:     }
// CHECK-NEXT:     func.return %y : tensor<16x192xf32>
// CHECK-NEXT:   }
// CHECK-NEXT:   bsisa.program @p strings ["x", "w", "y", "b", "unused"] attributes {note = "program"} {
// CHECK-NEXT:     bsisa.desc @d0 act "x" [16, 256]
// CHECK-NEXT:     bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128 {note = "desc"}
// CHECK-NEXT:     bsisa.desc @d2 out "y" [16, 192]
// CHECK-NEXT:     bsisa.desc @d3 bias "b" [192]
// CHECK-NEXT:     bsisa.cfg.array rows 8 cols 8 tiles 16
// CHECK-NEXT:     bsisa.cfg.fmt "bitmod3" sb 8 g 128
// CHECK-NEXT:     bsisa.cfg.sv slot 0 value 3
// CHECK-NEXT:     bsisa.cfg.sv slot 3 value -8192 {note = "sv"}
// CHECK-NEXT:     bsisa.cfg.kchunk 128
// CHECK-NEXT:     bsisa.cfg.mblock 8
// CHECK-NEXT:     bsisa.nop
// CHECK-NEXT:     bsisa.loop L0 count 2 attributes {note = "loop"} {
// CHECK-NEXT:       bsisa.loop L1 count 2 {
// CHECK-NEXT:         bsisa.acc.clr
// CHECK-NEXT:         bsisa.loop L2 count 2 {
// CHECK-NEXT:           bsisa.ld.act @d0 row L1 k L2
// CHECK-NEXT:           bsisa.ld.wgt @d1 col L0 k L2
// CHECK-NEXT:           bsisa.mac
// CHECK-NEXT:         }
// CHECK-NEXT:         bsisa.drain bias @d3
// CHECK-NEXT:         bsisa.st.out @d2 row L1 col L0
// CHECK-NEXT:       }
// CHECK-NEXT:     }
// CHECK-NEXT:     bsisa.loop L7 count 1 {
// CHECK-NEXT:     ^bb0:
// CHECK-NEXT:     }
// CHECK-NEXT:     bsisa.loop.down L6 count 3 attributes {note = "down"} {
// CHECK-NEXT:       bsisa.nop
// CHECK-NEXT:     }
// CHECK-NEXT:     bsisa.cfg.array rows 8 cols 8 tiles 16
// CHECK-NEXT:     bsisa.cfg.fmt "bitmod3" sb 8 g 128
// CHECK-NEXT:     bsisa.cfg.kchunk 256
// CHECK-NEXT:     bsisa.cfg.mblock 16
// CHECK-NEXT:     bsisa.loop L0 count 2 {
// CHECK-NEXT:       bsisa.ld.wgt @d1 col L0 k -
// CHECK-NEXT:       bsisa.acc.clr
// CHECK-NEXT:       bsisa.ld.act @d0 row - k -
// CHECK-NEXT:       bsisa.mac
// CHECK-NEXT:       bsisa.drain
// CHECK-NEXT:       bsisa.st.out @d2 row - col L0
// CHECK-NEXT:     }
// CHECK-NEXT:     bsisa.halt
// CHECK-NEXT:   }
// CHECK-NEXT: }

// GENERIC:      %y = "bsisa.launch"(%x, %b) <{program = @p, segment = 0 : i64, act_desc = @d0, bias_desc = @d3, out_desc = @d2, operandSegmentSizes = array<i32: 1, 0, 1>}> {note = "launch"} : (tensor<16x256xf32>, tensor<192xf32>) -> tensor<16x192xf32>
// GENERIC:      %z = "bsisa.launch"(%x) <{program = @p, segment = 1 : i64, act_desc = @d0, out_desc = @d2, operandSegmentSizes = array<i32: 1, 0, 0>}> : (tensor<16x256xf32>) -> tensor<16x192xf32>
// GENERIC:      %r = "bsisa.launch"(%x, %w) <{program = @p, segment = 1 : i64, act_desc = @d0, weight_desc = @d1, out_desc = @d2, operandSegmentSizes = array<i32: 1, 1, 0>}> : (tensor<16x256xf32>, tensor<192x256xf32>) -> tensor<16x192xf32>
// GENERIC:      %y = "bsisa.tiled_matmul"(%x, %q, %b) <{tiling = #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928>}> ({
// GENERIC:      "bsisa.loop"() <{lvl = 0 : i64, count = 2 : i64}> ({
// GENERIC:      "bsisa.ld.wgt"() <{desc = @weight, col_lvl = 0 : i64}> : () -> ()
// GENERIC:      "bsisa.acc.clr"() : () -> ()
// GENERIC:      "bsisa.ld.act"() <{desc = @act, row_lvl = 1 : i64}> : () -> ()
// GENERIC:      "bsisa.mac"() : () -> ()
// GENERIC:      "bsisa.drain"() <{bias = @bias}> : () -> ()
// GENERIC:      "bsisa.st.out"() <{desc = @out, row_lvl = 1 : i64, col_lvl = 0 : i64}> : () -> ()
// GENERIC:      "bsisa.program"() <{sym_name = "p", strings = ["x", "w", "y", "b", "unused"]}> ({
// GENERIC:      "bsisa.desc"() <{sym_name = "d0", kind = #bsisa<desc_kind act>, tensor = "x", shape = array<i64: 16, 256>}> : () -> ()
// GENERIC:      "bsisa.desc"() <{sym_name = "d1", kind = #bsisa<desc_kind qweight>, tensor = "w", shape = array<i64: 192, 256>, fmt = "bitmod3", scale_bits = 8 : i64, group_size = 128 : i64}> {note = "desc"} : () -> ()
// GENERIC:      "bsisa.cfg.array"() <{rows = 8 : i64, cols = 8 : i64, tiles = 16 : i64}> : () -> ()
// GENERIC:      "bsisa.cfg.fmt"() <{fmt = "bitmod3", sb = 8 : i64, group_size = 128 : i64}> : () -> ()
// GENERIC:      "bsisa.cfg.sv"() <{slot = 0 : i64, value = 3 : i64}> : () -> ()
// GENERIC:      "bsisa.cfg.kchunk"() <{kc = 128 : i64}> : () -> ()
// GENERIC:      "bsisa.cfg.mblock"() <{rows = 8 : i64}> : () -> ()
// GENERIC:      "bsisa.nop"() : () -> ()
// GENERIC:      "bsisa.ld.act"() <{desc = @d0, row_lvl = 1 : i64, k_lvl = 2 : i64}> : () -> ()
// GENERIC:      "bsisa.drain"() <{bias = @d3}> : () -> ()
// GENERIC:      "bsisa.loop.down"() <{lvl = 6 : i64, count = 3 : i64}> ({
// GENERIC:      "bsisa.nop"() : () -> ()
// GENERIC:      }) {note = "down"} : () -> ()
// GENERIC:      "bsisa.ld.act"() <{desc = @d0}> : () -> ()
// GENERIC:      "bsisa.drain"() : () -> ()
// GENERIC:      "bsisa.halt"() : () -> ()
