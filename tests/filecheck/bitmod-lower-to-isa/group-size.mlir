// A group of 6 weights: the bitmod dialect allows it (G divides K), the ISA does not
// (cfg.fmt needs a multiple of 4).
// RUN: not bitmod-opt %s -p bitmod-tile,bitmod-lower-to-isa 2>&1 | filecheck %s

func.func @f(%x: tensor<8x12xf32>) -> tensor<8x4xf32> {
  %w = bitmod.param "a.weight" : tensor<4x12xf32>
  %q = bitmod.quantize %w into "a.weight" : tensor<4x12xf32> -> !bitmod.qweight<4x12, int8, 6>
  %y = bitmod.matmul %x, %q : (tensor<8x12xf32>, !bitmod.qweight<4x12, int8, 6>) -> tensor<8x4xf32>
  func.return %y : tensor<8x4xf32>
}

// CHECK: group-size.mlir:8:3: error: 'bsisa.tiled_matmul' op bitmod-lower-to-isa: the ISA cannot encode this matmul: cfg.fmt: group size 6 must be a multiple of 4
