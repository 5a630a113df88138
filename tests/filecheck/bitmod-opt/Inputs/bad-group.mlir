// ROUNDTRIP: skip (an invalid group size does not parse, on purpose)
func.func @f(%w: tensor<4x64xf32>) {
  %q = bitmod.quantize %w : tensor<4x64xf32> -> !bitmod.qweight<4x64, int4, 48>
  func.return
}
