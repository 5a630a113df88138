// ROUNDTRIP: skip (an MX weight with a group size other than its block does not parse, on purpose)
func.func @f(%w: tensor<4x64xf32>) {
  %q = bitmod.quantize %w : tensor<4x64xf32> -> !bitmod.qweight<4x64, mxfp4, 48>
  func.return
}
