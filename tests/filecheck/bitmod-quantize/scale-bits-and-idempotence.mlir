// FP16 group scales (scale-bits=0), a smaller group size, and a second run that finds
// everything quantized and changes nothing.
// RUN: bitmod-opt %S/Inputs/two-layers.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize{dtype=int6 group-size=32 scale-bits=0}' -o %t.mlir
// RUN: filecheck %s < %t.mlir
// RUN: bitmod-opt %t.mlir -p 'bitmod-quantize{dtype=int3}' -o %t.again.mlir
// RUN: filecheck %s < %t.again.mlir

// CHECK: bitmod.quantize %{{.*}} into "fc1.weight" : tensor<4x256xf32> -> !bitmod.qweight<4x256, int6, 32, sb=0>
// CHECK: bitmod.quantize %{{.*}} into "fc2.weight" : tensor<2x4xf32> -> !bitmod.qweight<2x4, int6, 4, sb=0>
// CHECK-NOT: int3
