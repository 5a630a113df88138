func.func @f(%x: tensor<2x8xf32>, %b: tensor<3xf32>) -> tensor<2x4xf32> {
  %w = bitmod.param "fc1.weight" : tensor<4x8xf32>
  %q = bitmod.quantize %w : tensor<4x8xf32> -> !bitmod.qweight<4x8, int4, 8>
  %y = bitmod.matmul %x, %q bias %b : (tensor<2x8xf32>, !bitmod.qweight<4x8, int4, 8>, tensor<3xf32>) -> tensor<2x4xf32>
  func.return %y : tensor<2x4xf32>
}
