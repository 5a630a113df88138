// Every verifier error of the bsisa dialect, one per chunk, with its precise message at the
// op it names (the errors of a whole schedule name its bsisa.program or bsisa.tiled_matmul),
// and the located parse errors of its custom syntax.
// Not reachable from IR text, so not here: 65535 or more descriptors in one program; a bias
// descriptor with dim1 != 1 and a descriptor name index out of range (the IR has neither);
// an instruction's own "level L<n> is not an enclosing loop" and "<operand> must be a tensor"
// (the schedule check and the operand constraints report them first, as below).
// ROUNDTRIP: skip (every chunk is an error on purpose; several do not parse)
// RUN: bitmod-opt %s --split-input-file --verify-diagnostics

// An integer beyond 64 bits (custom<Int>).
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{integer 99999999999999999999 does not fit 64 bits}}
  bsisa.cfg.kchunk 99999999999999999999
  bsisa.halt
}

// -----

// A dimension beyond 64 bits (custom<Shape>).
bsisa.program @p {
  // expected-error@+1 {{does not fit 64 bits (a dimension)}}
  bsisa.desc @d0 act "x" [16, 99999999999999999999]
  bsisa.halt
}

// -----

// Not a loop level (custom<Level>).
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{expected a loop level L0..L7 or -, got 'L12345'}}
  bsisa.loop L12345 count 1 {
  }
  bsisa.halt
}

// -----

// A loop needs a level.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{bsisa.loop needs a level L0..L7, not -}}
  bsisa.loop - count 1 {
  }
  bsisa.halt
}

// -----

// An unknown descriptor kind (the kind enum).
bsisa.program @p {
  // expected-error@+1 {{unknown kind 'weights'; kinds: act, out, qweight, bias}}
  bsisa.desc @d0 weights "x" [16, 256]
  bsisa.halt
}

// -----

// A format that is not a string (custom<Checked>).
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{fmt: 5 : i64 should be of base attribute string}}
  bsisa.cfg.fmt 5 sb 8 g 128
  bsisa.halt
}

// -----

// A string table that is not strings (custom<Checked>).
// expected-error@+1 {{strings:}}
bsisa.program @p strings [1, 2] {
  bsisa.halt
}

// -----

// A nested symbol where a descriptor goes (custom<Ref>).
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  // expected-error@+1 {{Expected 'row'}}
  bsisa.ld.act @d0::@x row - k -
  bsisa.halt
}

// -----

// A tiling attribute with an unknown field.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.tiling: unexpected or repeated field 'depth'}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<depth = 1> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A tiling attribute with a field missing.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.tiling: missing m_blocks}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A tiling field that is not positive.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.tiling: tiles must be positive, got 0}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 0, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A tiling the ISA cannot encode.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.tiling: cfg.array: field cols=256 out of range [0, 255]}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 256, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A tiling whose block rows are not whole passes of the array.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.tiling: blocks of 12 rows must be a multiple of the 8 PE rows}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 12, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A tiling that is not a #bsisa.tiling (custom<Checked>).
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{tiling:}}
  %y = bsisa.tiled_matmul %x, %q tiling "tiling" : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// Descriptors come first.
// expected-error@+1 {{descriptor @d4 after the first instruction; descriptors come first}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.nop
  bsisa.desc @d4 act "z" [8, 8]
  bsisa.halt
}

// -----

// Only bsisa instructions in a program.
// expected-error@+1 {{func.func is not a bsisa instruction}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  func.func @g() {
    func.return
  }
  bsisa.halt
}

// -----

// An explicit string table without duplicates.
// expected-error@+1 {{duplicate name in the string table}}
bsisa.program @p strings ["x", "w", "y", "b", "x"] {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.halt
}

// -----

// An explicit string table names every tensor.
// expected-error@+1 {{tensor names ['b'] not in the strings}}
bsisa.program @p strings ["x", "w", "y"] {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.halt
}

// -----

// A program ends with bsisa.halt.
// expected-error@+1 {{must end with bsisa.halt}}
bsisa.program @p {
  bsisa.nop
}

// -----

// Descriptor names are unique (SymbolTable).
// expected-error@+1 {{Redefinition of symbol "d0"}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.desc @d0 out "z" [16, 192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.halt
}

// -----

// A reference to no descriptor.
// expected-error@+1 {{bsisa.ld.act: unknown descriptor @nope}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
    bsisa.ld.act @nope row L0 k -
  }
  bsisa.halt
}

// -----

// Descriptors live in a program (HasParent).
// expected-error@+1 {{'bsisa.desc' expects parent op 'bsisa.program'}}
bsisa.desc @d0 act "x" [16, 256]

// -----

// An act descriptor is 2-D.
bsisa.program @p {
  // expected-error@+1 {{a act descriptor is 2-D, got shape [16]}}
  bsisa.desc @d0 act "x" [16]
  bsisa.halt
}

// -----

// A bias descriptor is 1-D.
bsisa.program @p {
  // expected-error@+1 {{a bias descriptor is 1-D, got shape [16, 1]}}
  bsisa.desc @d0 bias "b" [16, 1]
  bsisa.halt
}

// -----

// A qweight descriptor has fmt, sb and g.
bsisa.program @p {
  // expected-error@+1 {{a qweight descriptor needs fmt, sb and g}}
  bsisa.desc @d0 qweight "w" [192, 256] fmt "bitmod3"
  bsisa.halt
}

// -----

// Only a qweight descriptor has fmt, sb and g.
bsisa.program @p {
  // expected-error@+1 {{fmt, sb and g belong to qweight descriptors only}}
  bsisa.desc @d0 act "x" [16, 256] sb 8
  bsisa.halt
}

// -----

// Dimensions are positive (runtime.isa).
bsisa.program @p {
  // expected-error@+1 {{descriptor dims 0x256 must be in [1, 2^32)}}
  bsisa.desc @d0 act "x" [0, 256]
  bsisa.halt
}

// -----

// A qweight's scale bits are 1..15 (runtime.isa).
bsisa.program @p {
  // expected-error@+1 {{qweight scale bits 16 not in [1, 15]}}
  bsisa.desc @d0 qweight "w" [192, 256] fmt "bitmod3" sb 16 g 128
  bsisa.halt
}

// -----

// A qweight's group size is a multiple of 4 (runtime.isa).
bsisa.program @p {
  // expected-error@+1 {{qweight group size 6 must be a multiple of 4 in [4, 65532]}}
  bsisa.desc @d0 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 6
  bsisa.halt
}

// -----

// A qweight's format is registered (runtime.isa).
bsisa.program @p {
  // expected-error@+1 {{unknown weight format 'int99'}}
  bsisa.desc @d0 qweight "w" [192, 256] fmt "int99" sb 8 g 128
  bsisa.halt
}

// -----

// cfg.array geometry is positive.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.array: rows/cols/tiles must be >= 1}}
  bsisa.cfg.array rows 0 cols 8 tiles 16
  bsisa.halt
}

// -----

// cfg.array cols is 8 bits.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.array: field cols=256 out of range [0, 255]}}
  bsisa.cfg.array rows 8 cols 256 tiles 16
  bsisa.halt
}

// -----

// cfg.sv slot is 2 bits.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  // expected-error@+1 {{cfg.sv: field slot=4 out of range [0, 3]}}
  bsisa.cfg.sv slot 4 value 1
  bsisa.halt
}

// -----

// cfg.sv value is a signed 16-bit field.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  // expected-error@+1 {{cfg.sv: field value=-32769 out of range [-32768, 32767]}}
  bsisa.cfg.sv slot 0 value -32769
  bsisa.halt
}

// -----

// cfg.fmt scale bits are positive.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.fmt: scale bits must be >= 1}}
  bsisa.cfg.fmt "bitmod3" sb 0 g 128
  bsisa.halt
}

// -----

// cfg.fmt scale bits are 4 bits.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.fmt: field sb=16 out of range [0, 15]}}
  bsisa.cfg.fmt "bitmod3" sb 16 g 128
  bsisa.halt
}

// -----

// cfg.fmt group size is a multiple of 4.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.fmt: group size 6 must be a multiple of 4}}
  bsisa.cfg.fmt "bitmod3" sb 8 g 6
  bsisa.halt
}

// -----

// cfg.fmt names a registered format.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{unknown weight format 'bitmod9'}}
  bsisa.cfg.fmt "bitmod9" sb 8 g 128
  bsisa.halt
}

// -----

// cfg.kchunk is positive.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.kchunk: kc must be >= 1}}
  bsisa.cfg.kchunk 0
  bsisa.halt
}

// -----

// cfg.kchunk is 32 bits.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{cfg.kchunk: field kc=4294967296 out of range [0, 4294967295]}}
  bsisa.cfg.kchunk 4294967296
  bsisa.halt
}

// -----

// cfg.mblock is positive.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  // expected-error@+1 {{cfg.mblock: rows must be >= 1}}
  bsisa.cfg.mblock 0
  bsisa.halt
}

// -----

// cfg.mblock is 16 bits.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  // expected-error@+1 {{cfg.mblock: field rows=65536 out of range [0, 65535]}}
  bsisa.cfg.mblock 65536
  bsisa.halt
}

// -----

// A loop runs at least once.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{loop: count must be >= 1}}
  bsisa.loop L0 count 0 {
  }
  bsisa.halt
}

// -----

// A descending loop runs at least once too.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{loop.down: count must be >= 1}}
  bsisa.loop.down L0 count 0 {
  }
  bsisa.halt
}

// -----

// A level a descending loop holds is not free for an inner loop.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.loop.down L0 count 3 {
    // expected-error@+1 {{level L0 is already used by an enclosing loop}}
    bsisa.loop L0 count 2 {
    }
  }
  bsisa.halt
}

// -----

// A loop count is 32 bits.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{loop: field count=4294967296 out of range [0, 4294967295]}}
  bsisa.loop L0 count 4294967296 {
  }
  bsisa.halt
}

// -----

// A loop level is L0..L7.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{loop: loop level 8 not in [0, 7] or None}}
  bsisa.loop L8 count 1 {
  }
  bsisa.halt
}

// -----

// A level operand is L0..L7.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  // expected-error@+1 {{ld.act: loop level 9 not in [0, 7] or None}}
  bsisa.ld.act @d0 row L9 k -
  bsisa.halt
}

// -----

// Instructions live in a program or a tiled matmul.
func.func @f() {
  // expected-error@+1 {{must be inside a bsisa.program or bsisa.tiled_matmul}}
  bsisa.mac
  func.return
}

// -----

// bsisa.halt is at the top level of a program (HasParent).
func.func @f() {
  // expected-error@+1 {{'bsisa.halt' expects parent op 'bsisa.program'}}
  bsisa.halt
  func.return
}

// -----

// Configuration lives in a program only.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        // expected-error@+1 {{must be inside a bsisa.program}}
        bsisa.cfg.kchunk 256
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A loop nest is at most 8 deep.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.loop L0 count 1 {
    bsisa.loop L7 count 1 {
      bsisa.loop L6 count 1 {
        bsisa.loop L5 count 1 {
          bsisa.loop L4 count 1 {
            bsisa.loop L3 count 1 {
              bsisa.loop L2 count 1 {
                bsisa.loop L1 count 1 {
                  // expected-error@+1 {{loop nest deeper than 8 levels}}
                  bsisa.loop L0 count 1 {
                    bsisa.nop
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  bsisa.halt
}

// -----

// A level is used by one enclosing loop only.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.loop L1 count 2 {
    // expected-error@+1 {{level L1 is already used by an enclosing loop}}
    bsisa.loop L1 count 2 {
    }
  }
  bsisa.halt
}

// -----

// bsisa.halt is not in a loop body.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{bsisa.halt cannot appear in a loop body}}
  bsisa.loop L0 count 1 {
    bsisa.halt
  }
  bsisa.halt
}

// -----

// Only instructions in a loop body.
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  // expected-error@+1 {{func.func cannot appear in a loop body}}
  bsisa.loop L0 count 1 {
    func.func @g() {
      func.return
    }
  }
  bsisa.halt
}

// -----

// Descriptor references are flat (FlatSymbolRefAttrConstr, generic form).
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
    // expected-error@+1 {{Expected SymbolRefAttr with no nested symbols.}}
    "bsisa.ld.act"() <{desc = @d0::@x, row_lvl = 0 : i64}> : () -> ()
  }
  bsisa.halt
}

// -----

// A block of MR rows is whole passes of the array.
// expected-error@+1 {{bsisa.cfg.mblock: blocks of 12 rows must be a multiple of the 8 PE rows}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.cfg.mblock 12
  bsisa.halt
}

// -----

// cfg.mblock needs the array's rows.
// expected-error@+1 {{bsisa.cfg.mblock before any cfg.array}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.mblock 16
  bsisa.halt
}

// -----

// mac needs the array.
// expected-error@+1 {{bsisa.mac before any cfg.array}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.mac
  bsisa.halt
}

// -----

// mac needs the format.
// expected-error@+1 {{bsisa.mac before any cfg.fmt}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.mac
  bsisa.halt
}

// -----

// mac needs the K chunk.
// expected-error@+1 {{bsisa.mac before any cfg.kchunk}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.mac
  bsisa.halt
}

// -----

// A programmed special value the 64-bit group accumulator cannot sum over a group of 128.
// expected-error@+1 {{bsisa.mac: bitmod3 weights and SV register [16384] of a group of 128 can sum 128 x 16384 term units > 2^20: the 64-bit group accumulator can overflow for FP16 activations (G x max|w| must be at most 1,048,576)}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.sv slot 0 value 16384
  bsisa.cfg.kchunk 256
  bsisa.mac
  bsisa.halt
}

// -----

// A K chunk is whole groups.
// expected-error@+1 {{bsisa.mac: K chunk 192 is not a multiple of the group size 128}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.cfg.kchunk 192
  bsisa.mac
  bsisa.halt
}

// -----

// A weight load's K chunk is whole groups.
// expected-error@+1 {{bsisa.ld.wgt: K chunk 192 is not a multiple of the group size 128}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.cfg.kchunk 192
  bsisa.loop L0 count 2 {
    bsisa.ld.wgt @d1 col L0 k -
  }
  bsisa.halt
}

// -----

// drain needs the array.
// expected-error@+1 {{bsisa.drain before any cfg.array}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.drain
  bsisa.halt
}

// -----

// A drain's bias is a bias descriptor.
// expected-error@+1 {{bsisa.drain: @d0 is a act, not a bias}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.drain bias @d0
  bsisa.halt
}

// -----

// A store needs the array.
// expected-error@+1 {{bsisa.st.out before any cfg.array}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.st.out @d2 row - col -
  bsisa.halt
}

// -----

// A load needs the K chunk.
// expected-error@+1 {{bsisa.ld.act before any cfg.kchunk}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.loop L0 count 2 {
    bsisa.ld.act @d0 row L0 k -
  }
  bsisa.halt
}

// -----

// A weight load needs the format.
// expected-error@+1 {{bsisa.ld.wgt before any cfg.fmt}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
    bsisa.ld.wgt @d1 col L0 k -
  }
  bsisa.halt
}

// -----

// ld.act loads an act descriptor.
// expected-error@+1 {{bsisa.ld.act: @d1 is a qweight, expected a act}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
    bsisa.ld.act @d1 row L0 k -
  }
  bsisa.halt
}

// -----

// A level names an enclosing loop.
// expected-error@+1 {{bsisa.ld.act: level L3 is not an enclosing loop}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.ld.act @d0 row L3 k -
  bsisa.halt
}

// -----

// A row loop covers the rows exactly: ceil(16 / 8) = 2.
// expected-error@+1 {{bsisa.ld.act @d0: row loop L0 runs 3 times but 16 elements in blocks of 8 need 2}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 3 {
    bsisa.ld.act @d0 row L0 k -
  }
  bsisa.halt
}

// -----

// A dimension without a loop fits one block: 192 channels are 2 blocks of 128.
// expected-error@+1 {{bsisa.st.out @d2: col has no loop but 192 elements need 2 blocks of 128}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
    bsisa.st.out @d2 row L0 col -
  }
  bsisa.halt
}

// -----

// A weight load matches cfg.fmt.
// expected-error@+1 {{bsisa.ld.wgt: @d1 is fmt=bitmod3 sb=8 g=128 but cfg.fmt set fmt=int4 sb=8 g=128}}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "int4" sb 8 g 128
  bsisa.cfg.kchunk 256
  bsisa.loop L0 count 2 {
    bsisa.ld.wgt @d1 col L0 k -
  }
  bsisa.halt
}

// -----

// The activation is a static tensor.
func.func @f(%x: tensor<?x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{activation must be a static 2-D tensor, got tensor<?x256xf32>}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<?x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// The weight is a !bitmod.qweight (operand constraint).
func.func @f(%x: tensor<16x256xf32>, %q: tensor<192x256xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{tensor<192x256xf32> should be of base attribute bitmod.qweight}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, tensor<192x256xf32>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// Activation and weight agree on K.
func.func @f(%x: tensor<16x128xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{activation K=128 does not match weight K=256}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x128xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// The result is [rows, N].
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x100xf32> {
  // expected-error@+1 {{result shape [16, 100] is not [16, 192]}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x100xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x100xf32>
}

// -----

// The bias is [N].
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>, %b: tensor<100xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bias shape [100] is not [192]}}
  %y = bsisa.tiled_matmul %x, %q bias %b tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>, tensor<100xf32>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// The block counts are the tiling's.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{tiling k_chunks = 2, expected 1 for M=16 N=192 K=256}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 2, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// The K chunk is whole groups.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{K chunk 192 is not a multiple of the group size 128}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 192, act_kc = 192, m_blocks = 2, n_blocks = 2, k_chunks = 2, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// An activation block holds a K chunk or all of K.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{tiling act_kc = 128 is neither kc = 256 nor K = 256}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 128, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// The activation block size is the tiling's.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{tiling act_block_bytes = 100, but a block of this matmul takes 4096 bytes}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 100, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// The weight block size is the tiling's.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{tiling weight_block_bytes = 12864, but a block of this matmul takes 12928 bytes}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12864> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A schedule has no configuration or halt at its top level.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.halt cannot appear in a tiled matmul schedule}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.halt
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A schedule names the matmul's roles.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.ld.act: @bias is not a role of this tiled matmul (roles: @act, @weight, @out)}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @bias row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A role is used as its kind.
func.func @f(%x: tensor<16x256xf32>, %q: !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
  // expected-error@+1 {{bsisa.ld.act: @weight is a qweight, expected a act}}
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 256, act_kc = 256, m_blocks = 2, n_blocks = 2, k_chunks = 1, act_block_bytes = 4096, weight_block_bytes = 12928> : (tensor<16x256xf32>, !bitmod.qweight<192x256, bitmod3, 128>) -> tensor<16x192xf32> {
    bsisa.loop L0 count 2 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 2 {
        bsisa.acc.clr
        bsisa.ld.act @weight row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<16x192xf32>
}

// -----

// A launch runs a bsisa.program.
func.func @f(%x: tensor<16x256xf32>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{@f is not a bsisa.program}}
  %y = bsisa.launch @f[0] act @d0(%x) out @d2 : (tensor<16x256xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
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
  bsisa.halt
}

// -----

// A launch names a segment of the program.
func.func @f(%x: tensor<16x256xf32>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{segment 1 out of range; @p has 1 segments}}
  %y = bsisa.launch @p[1] act @d0(%x) out @d2 : (tensor<16x256xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
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
  bsisa.halt
}

// -----

// A launch binds descriptors of the right kind.
func.func @f(%x: tensor<16x256xf32>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{@d0 is not a out descriptor of @p}}
  %y = bsisa.launch @p[0] act @d0(%x) out @d0 : (tensor<16x256xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
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
  bsisa.halt
}

// -----

// A launch binds tensors of the descriptor's shape.
func.func @f(%x: tensor<8x256xf32>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{act tensor shape [8, 256] does not match @d0 [16, 256]}}
  %y = bsisa.launch @p[0] act @d0(%x) out @d2 : (tensor<8x256xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
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
  bsisa.halt
}

// -----

// A bias operand goes with a bias descriptor (generic form).
func.func @f(%x: tensor<16x256xf32>, %b: tensor<192xf32>) -> tensor<16x192xf32> {
  // expected-error@+1 {{a bias operand and a bias descriptor go together}}
  %y = "bsisa.launch"(%x, %b) <{program = @p, segment = 0 : i64, act_desc = @d0, out_desc = @d2, operandSegmentSizes = array<i32: 1, 0, 1>}> : (tensor<16x256xf32>, tensor<192xf32>) -> tensor<16x192xf32>
  func.return %y : tensor<16x192xf32>
}
bsisa.program @p {
  bsisa.desc @d0 act "x" [16, 256]
  bsisa.desc @d1 qweight "w" [192, 256] fmt "bitmod3" sb 8 g 128
  bsisa.desc @d2 out "y" [16, 192]
  bsisa.desc @d3 bias "b" [192]
  bsisa.cfg.array rows 8 cols 8 tiles 16
  bsisa.cfg.fmt "bitmod3" sb 8 g 128
  bsisa.cfg.kchunk 128
  bsisa.loop L0 count 2 {
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
  bsisa.halt
}
