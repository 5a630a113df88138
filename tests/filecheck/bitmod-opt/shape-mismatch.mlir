// Verifier errors name the op, the operand and its position.
// RUN: not bitmod-opt %s 2>&1 | filecheck %s

func.func @f(%x: tensor<2x8xf32>, %w: tensor<4x16xf32>, %b: tensor<4xf32>) -> tensor<2x4xf32> {
  %q = bitmod.quantize %w : tensor<4x16xf32> -> !bitmod.qweight<4x16, bitmod3, 8>
  %y = bitmod.matmul %x, %q bias %b : (tensor<2x8xf32>, !bitmod.qweight<4x16, bitmod3, 8>, tensor<4xf32>) -> tensor<2x4xf32>
  func.return %y : tensor<2x4xf32>
}

// CHECK: shape-mismatch.mlir:6:3: error: 'bitmod.matmul' op operand 'weight' !bitmod.qweight<4x16, bitmod3, 8> has K=16 but operand 'input' tensor<2x8xf32> has K=8
// CHECK-NOT: {{.}}
