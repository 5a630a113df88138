// linalg.batch_matmul (which xDSL 0.74 lacks; bitmod adds it) with a constant weight
// broadcast along the batch, by linalg.generic and by linalg.broadcast, and a bias added
// through a linalg.broadcast + linalg.add.
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod -o %t.mlir
// RUN: filecheck %s < %t.mlir

#kn = affine_map<(d0, d1, d2) -> (d1, d2)>
#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
func.func @bmm(%x: tensor<2x3x4xf32>) -> (tensor<2x3x2xf32>, tensor<2x3x2xf32>) {
  %zero = arith.constant 0.000000e+00 : f32
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf32>
  %b = arith.constant dense<[0.25, 0.75]> : tensor<2xf32>
  %e = tensor.empty() : tensor<2x4x2xf32>
  %wb = linalg.generic {indexing_maps = [#kn, #id3], iterator_types = ["parallel", "parallel", "parallel"]} ins(%w : tensor<4x2xf32>) outs(%e : tensor<2x4x2xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<2x4x2xf32>
  %eo = tensor.empty() : tensor<2x3x2xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%eo : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %y = linalg.batch_matmul ins(%x, %wb : tensor<2x3x4xf32>, tensor<2x4x2xf32>) outs(%acc : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %bb = linalg.broadcast ins(%b : tensor<2xf32>) outs(%eo : tensor<2x3x2xf32>) dimensions = [0, 1]
  %yb = linalg.add ins(%y, %bb : tensor<2x3x2xf32>, tensor<2x3x2xf32>) outs(%eo : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %wb2 = linalg.broadcast ins(%w : tensor<4x2xf32>) outs(%e : tensor<2x4x2xf32>) dimensions = [0]
  %y2 = linalg.batch_matmul ins(%x, %wb2 : tensor<2x3x4xf32>, tensor<2x4x2xf32>) outs(%acc : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  func.return %yb, %y2 : tensor<2x3x2xf32>, tensor<2x3x2xf32>
}

// CHECK:       func.func @bmm(%[[X:[a-z0-9_]+]]: tensor<2x3x4xf32>)
// CHECK:         %[[W:.*]] = bitmod.param "fc1.weight" : tensor<2x4xf32>
// CHECK-NEXT:    %[[B:.*]] = bitmod.param "fc1.bias" : tensor<2xf32>
// CHECK-NEXT:    %[[Y:.*]] = bitmod.matmul %[[X]], %[[W]] bias %[[B]] : (tensor<2x3x4xf32>, tensor<2x4xf32>, tensor<2xf32>) -> tensor<2x3x2xf32>
// CHECK-NEXT:    %[[W2:.*]] = bitmod.param "fc1.weight" : tensor<2x4xf32>
// CHECK-NEXT:    %[[Y2:.*]] = bitmod.matmul %[[X]], %[[W2]] : (tensor<2x3x4xf32>, tensor<2x4xf32>) -> tensor<2x3x2xf32>
// CHECK-NEXT:    func.return %[[Y]], %[[Y2]]
// CHECK-NOT:     linalg.
