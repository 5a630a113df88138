// Per-layer overrides, unquoted (bitmod-opt quotes the value for xDSL's pipeline lexer) in
// mlir-opt syntax, and quoted with a group size and a full parameter name in xdsl-opt syntax.
// RUN: bitmod-opt %S/Inputs/two-layers.mlir --pass-pipeline='builtin.module(convert-linalg-to-bitmod,bitmod-quantize{dtype=bitmod4 layers=fc1:mxfp4})' | filecheck %s --check-prefix=MX
// RUN: bitmod-opt %S/Inputs/two-layers.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize{layers="fc1.weight:int4_asym:64,fc2:int8" scale-bits=6}' | filecheck %s --check-prefix=MIX

// MX: bitmod.quantize %{{.*}} into "fc1.weight" : tensor<4x256xf32> -> !bitmod.qweight<4x256, mxfp4, 32>
// MX: bitmod.quantize %{{.*}} into "fc2.weight" : tensor<2x4xf32> -> !bitmod.qweight<2x4, bitmod4, 4>

// MIX: bitmod.quantize %{{.*}} into "fc1.weight" : tensor<4x256xf32> -> !bitmod.qweight<4x256, int4_asym, 64, sb=6>
// MIX: bitmod.quantize %{{.*}} into "fc2.weight" : tensor<2x4xf32> -> !bitmod.qweight<2x4, int8, 4, sb=6>
