// A hexadecimal element of a float dense literal is its bit pattern, as in MLIR: torch-mlir
// writes -inf (every masked_fill(..., -inf) of a causal mask) as dense<0xFF800000>.
// RUN: bitmod-opt %s | filecheck %s

func.func @main() -> (tensor<f32>, tensor<2xf16>, tensor<2xi32>) {
  %inf = arith.constant dense<0xFF800000> : tensor<f32>
  %h = arith.constant dense<[0x7C00, 0x3C00]> : tensor<2xf16>
  %i = arith.constant dense<[0x10, 3]> : tensor<2xi32>
  func.return %inf, %h, %i : tensor<f32>, tensor<2xf16>, tensor<2xi32>
}

// CHECK: arith.constant dense<0xff800000> : tensor<f32>
// CHECK: arith.constant dense<[0x7c00, 1.000000e+00]> : tensor<2xf16>
// CHECK: arith.constant dense<[16, 3]> : tensor<2xi32>
