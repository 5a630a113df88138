// A module whose only product is not a linear layer (its batched weight differs per batch):
// convert-linalg-to-bitmod leaves it on the host, and each later pass says it has nothing to
// do instead of asking for convert-linalg-to-bitmod again.
// RUN: bitmod-opt %s --pipeline=bitmod-default 2>&1 | filecheck %s

func.func @main(%x: tensor<2x2x4xf32>) -> tensor<2x2x1xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %w = arith.constant dense<[[[1.0], [2.0], [3.0], [4.0]], [[5.0], [6.0], [7.0], [8.0]]]> : tensor<2x4x1xf32>
  %e = tensor.empty() : tensor<2x2x1xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<2x2x1xf32>) -> tensor<2x2x1xf32>
  %y = linalg.batch_matmul ins(%x, %w : tensor<2x2x4xf32>, tensor<2x4x1xf32>) outs(%acc : tensor<2x2x1xf32>) -> tensor<2x2x1xf32>
  func.return %y : tensor<2x2x1xf32>
}

// CHECK:      host-products.mlir:11:3: warning: 'linalg.batch_matmul' op convert-linalg-to-bitmod: none of the 1 linalg products is a linear layer
// CHECK-NEXT: host-products.mlir:11:3: warning: 'linalg.batch_matmul' op bitmod-quantize: the module has no bitmod.matmul, nothing to do: its linalg products, such as this one, are not linear layers and stay on the host (products of two run-time values are converted by convert-linalg-to-bitmod unless kv-dtype=host)
// CHECK-NEXT: host-products.mlir:11:3: warning: 'linalg.batch_matmul' op bitmod-tile: the module has no quantized bitmod.matmul, nothing to do
// CHECK-NEXT: host-products.mlir:11:3: warning: 'linalg.batch_matmul' op bitmod-lower-to-isa: the module has no bsisa.tiled_matmul, nothing to do
// CHECK:      linalg.batch_matmul
// CHECK-NOT:  bsisa.
