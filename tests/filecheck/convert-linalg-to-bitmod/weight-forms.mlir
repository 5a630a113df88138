// Weight forms: W^T through a transposing linalg.generic, W [K, N] used directly
// (torch.matmul(x, w)), a weight shared by two products, and a product without bias.
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod -o %t.mlir
// RUN: filecheck %s < %t.mlir

#id = affine_map<(d0, d1) -> (d0, d1)>
#tr = affine_map<(d0, d1) -> (d1, d0)>
#row = affine_map<(d0, d1) -> (d1)>
func.func @forms(%x: tensor<2x4xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>) {
  %zero = arith.constant 0.000000e+00 : f32
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]> : tensor<3x4xf32>
  %b = arith.constant dense<[0.5, -0.5, 1.5]> : tensor<3xf32>
  %kn = arith.constant dense<[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]]> : tensor<4x2xf32>
  %e43 = tensor.empty() : tensor<4x3xf32>
  %wt = linalg.generic {indexing_maps = [#tr, #id], iterator_types = ["parallel", "parallel"]} ins(%w : tensor<3x4xf32>) outs(%e43 : tensor<4x3xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<4x3xf32>
  %e23 = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e23 : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y1 = linalg.matmul ins(%x, %wt : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y1b = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%y1, %b : tensor<2x3xf32>, tensor<3xf32>) outs(%e23 : tensor<2x3xf32>) {
  ^bb0(%in: f32, %in_1: f32, %out: f32):
    %s = arith.addf %in, %in_1 : f32
    linalg.yield %s : f32
  } -> tensor<2x3xf32>
  %y2 = linalg.matmul ins(%x, %wt : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  %e22 = tensor.empty() : tensor<2x2xf32>
  %acc2 = linalg.fill ins(%zero : f32) outs(%e22 : tensor<2x2xf32>) -> tensor<2x2xf32>
  %y3 = linalg.matmul ins(%x, %kn : tensor<2x4xf32>, tensor<4x2xf32>) outs(%acc2 : tensor<2x2xf32>) -> tensor<2x2xf32>
  func.return %y1b, %y2, %y3 : tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>
}

// CHECK:       func.func @forms(%[[X:[a-z0-9_]+]]: tensor<2x4xf32>)
// CHECK:         %[[W:.*]] = bitmod.param "fc1.weight" : tensor<3x4xf32>
// CHECK-NEXT:    %[[B:.*]] = bitmod.param "fc1.bias" : tensor<3xf32>
// CHECK-NEXT:    %[[Y1:.*]] = bitmod.matmul %[[X]], %[[W]] bias %[[B]] : (tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x3xf32>
// The second product reuses the tied weight's parameter and has no bias.
// CHECK-NEXT:    %[[W2:.*]] = bitmod.param "fc1.weight" : tensor<3x4xf32>
// CHECK-NEXT:    %[[Y2:.*]] = bitmod.matmul %[[X]], %[[W2]] : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
// The [K, N] constant is stored transposed, as [N, K].
// CHECK-NEXT:    %[[W3:.*]] = bitmod.param "fc2.weight" : tensor<2x4xf32>
// CHECK-NEXT:    %[[Y3:.*]] = bitmod.matmul %[[X]], %[[W3]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x2xf32>
// CHECK-NEXT:    func.return %[[Y1]], %[[Y2]], %[[Y3]]
// CHECK-NOT:     arith.constant
