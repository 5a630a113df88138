// A dense_resource weight whose blob the file does not define: one diagnostic at the
// constant, exit status 1, no output file.
// RUN: not bitmod-opt %s -p convert-linalg-to-bitmod -o %t.out 2>&1 | filecheck %s
// RUN: not test -e %t.out

func.func @f(%x: tensor<2x4xf32>) -> tensor<2x3xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %w = arith.constant dense_resource<no_such_blob> : tensor<4x3xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %y : tensor<2x3xf32>
}

// CHECK: missing-blob.mlir:8:3: error: 'arith.constant' op dense_resource blob 'no_such_blob' has no data
// CHECK-NOT: Traceback
