// Products the pass must leave alone: an accumulator that is not zero, a batched constant
// weight that differs per batch (not one quantized matrix), and, with kv-dtype=host, a
// product of two run-time values (activation-products.mlir converts those by default).
// RUN: bitmod-opt %s -p "convert-linalg-to-bitmod{kv-dtype=host}" | filecheck %s

func.func @keep(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>, %c: tensor<2x3xf32>, %xb: tensor<2x2x4xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2x1xf32>) {
  %zero = arith.constant 0.000000e+00 : f32
  %k = arith.constant dense<1.0> : tensor<4x3xf32>
  %wb = arith.constant dense<[[[1.0], [2.0], [3.0], [4.0]], [[5.0], [6.0], [7.0], [8.0]]]> : tensor<2x4x1xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y1 = linalg.matmul ins(%x, %w : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y2 = linalg.matmul ins(%x, %k : tensor<2x4xf32>, tensor<4x3xf32>) outs(%c : tensor<2x3xf32>) -> tensor<2x3xf32>
  %eb = tensor.empty() : tensor<2x2x1xf32>
  %accb = linalg.fill ins(%zero : f32) outs(%eb : tensor<2x2x1xf32>) -> tensor<2x2x1xf32>
  %y3 = linalg.batch_matmul ins(%xb, %wb : tensor<2x2x4xf32>, tensor<2x4x1xf32>) outs(%accb : tensor<2x2x1xf32>) -> tensor<2x2x1xf32>
  func.return %y1, %y2, %y3 : tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2x1xf32>
}

// CHECK-NOT:   bitmod.params
// CHECK-LABEL: func.func @keep
// CHECK:         linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<2x4xf32>, tensor<4x3xf32>) outs(%{{.*}} : tensor<2x3xf32>)
// CHECK:         linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<2x4xf32>, tensor<4x3xf32>) outs(%{{.*}} : tensor<2x3xf32>)
// CHECK:         linalg.batch_matmul ins(%{{.*}}, %{{.*}} : tensor<2x2x4xf32>, tensor<2x4x1xf32>)
// CHECK-NOT:     bitmod.
