// bitmod.quantize without 'into' is a request bitmod-quantize has not carried out yet.
// RUN: not bitmod-opt %s -p bitmod-tile,bitmod-lower-to-isa 2>&1 | filecheck %s

func.func @f(%x: tensor<8x64xf32>) -> tensor<8x32xf32> {
  %w = bitmod.param "a.weight" : tensor<32x64xf32>
  %q = bitmod.quantize %w : tensor<32x64xf32> -> !bitmod.qweight<32x64, int4, 64>
  %y = bitmod.matmul %x, %q : (tensor<8x64xf32>, !bitmod.qweight<32x64, int4, 64>) -> tensor<8x32xf32>
  func.return %y : tensor<8x32xf32>
}

// CHECK: not-quantized.mlir:7:3: error: 'bsisa.tiled_matmul' op bitmod-lower-to-isa: the weight is not quantized yet (bitmod.quantize without 'into'); run bitmod-quantize first
