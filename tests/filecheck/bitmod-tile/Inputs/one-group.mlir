// K = 64 in one group of 64: no order can stream K in chunks.

func.func @f(%x: tensor<8x64xf32>) -> tensor<8x64xf32> {
  %w = bitmod.param "fc.weight" : tensor<64x64xf32>
  %q = bitmod.quantize %w into "fc.weight" : tensor<64x64xf32> -> !bitmod.qweight<64x64, bitmod4, 64>
  %y = bitmod.matmul %x, %q : (tensor<8x64xf32>, !bitmod.qweight<64x64, bitmod4, 64>) -> tensor<8x64xf32>
  func.return %y : tensor<8x64xf32>
}
