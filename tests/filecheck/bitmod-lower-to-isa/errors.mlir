// Errors: one diagnostic naming the op, exit status 1, no output file.
// RUN: not bitmod-opt %s -p bitmod-tile,bitmod-lower-to-isa -o %t.out 2>&1 | filecheck %s --check-prefix=MX
// RUN: not test -e %t.out
// RUN: not bitmod-opt %s -p bitmod-lower-to-isa 2>&1 | filecheck %s --check-prefix=UNTILED
// RUN: not bitmod-opt %S/Inputs/tiled-mxfp4.mlir -p bitmod-lower-to-isa -o %t.out 2>&1 | filecheck %s --check-prefix=TILED-MX
// RUN: not test -e %t.out

func.func @f(%x: tensor<8x64xf32>) -> tensor<8x32xf32> {
  %w = bitmod.param "fc.weight" : tensor<32x64xf32>
  %q = bitmod.quantize %w into "fc.weight" : tensor<32x64xf32> -> !bitmod.qweight<32x64, mxfp4, 32>
  %y = bitmod.matmul %x, %q : (tensor<8x64xf32>, !bitmod.qweight<32x64, mxfp4, 32>) -> tensor<8x32xf32>
  func.return %y : tensor<8x32xf32>
}

// An MX weight stops at the tile pass, which cannot schedule it for the bit-serial PE.
// MX: errors.mlir:11:3: error: 'bitmod.matmul' op bitmod-tile: format mxfp4 has no bit-serial lowering (family 'mx'); quantize this layer to an accelerated format or keep it on the host
// MX-NOT: Traceback
// TILED-MX: tiled-mxfp4.mlir:5:3: error: 'bsisa.tiled_matmul' op format mxfp4 has no bit-serial lowering (family 'mx'); quantize this layer to an accelerated format or keep it on the host
// UNTILED: errors.mlir:11:3: error: 'bitmod.matmul' op bitmod-lower-to-isa: this quantized matmul is not tiled; run bitmod-tile before bitmod-lower-to-isa
