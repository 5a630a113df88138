// ROUNDTRIP: skip (an unknown dtype does not parse, on purpose)
// RUN: not bitmod-opt %s 2>&1 | filecheck %s

func.func @f(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) -> !bitmod.qweight<4x8, bitmod9, 8> {
  %q = bitmod.quantize %w : tensor<4x8xf32> -> !bitmod.qweight<4x8, bitmod9, 8>
  func.return %q : !bitmod.qweight<4x8, bitmod9, 8>
}

// CHECK: unknown-dtype.mlir:4:80: error: unknown bitmod dtype 'bitmod9'; valid dtypes: int3, int3_asym, int4, {{.*}}, bitmod3, bitmod4, {{.*}}, olive4, mxfp3
// CHECK-NOT: {{.}}
