module attributes {bitmod.params = "no-such.params.safetensors"} {
  func.func @f(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
    %w = bitmod.param "fc1.weight" : tensor<4x8xf32>
    %y = bitmod.matmul %x, %w : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
    func.return %y : tensor<2x4xf32>
  }
}
