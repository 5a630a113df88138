#a = affine_map<(d0, d1, d2) -> (d0, d2)>
#bt = affine_map<(d0, d1, d2) -> (d1, d2)>
#c = affine_map<(d0, d1, d2) -> (d0, d1)>
func.func @f(%x: tensor<2x4xf32>, %v: tensor<4x3xf32>, %acc: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %0 = linalg.matmul indexing_maps = [1, 2, 3] ins(%x, %v : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %0 : tensor<2x3xf32>
}
// ROUNDTRIP: skip (malformed on purpose: explicit-maps-errors.mlir checks its error)
