// FP16 group scales (sb=0): the bit-serial datapath dequantizes integer scale codes.
// RUN: not bitmod-opt %s -p bitmod-tile,bitmod-lower-to-isa 2>&1 | filecheck %s

func.func @fp16_scales(%x: tensor<8x64xf32>) -> tensor<8x32xf32> {
  %w = bitmod.param "a.weight" : tensor<32x64xf32>
  %q = bitmod.quantize %w into "a.weight" : tensor<32x64xf32> -> !bitmod.qweight<32x64, int4, 64, sb=0>
  %y = bitmod.matmul %x, %q : (tensor<8x64xf32>, !bitmod.qweight<32x64, int4, 64, sb=0>) -> tensor<8x32xf32>
  func.return %y : tensor<8x32xf32>
}

// CHECK: fp16-scales.mlir:7:3: error: 'bsisa.tiled_matmul' op bitmod-lower-to-isa: the int4 weight has FP16 group scales (sb=0); the bit-serial datapath dequantizes integer scale codes: quantize with scale-bits >= 2
