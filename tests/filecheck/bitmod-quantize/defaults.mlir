// Default options: bitmod3, groups of 128 along K (K=256 -> 2 groups; K=4 < 128 -> one
// group per row), INT8 second-level scales (sb=8 is the default and is not printed).
// RUN: bitmod-opt %S/Inputs/two-layers.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize' -o %t.mlir
// RUN: filecheck %s < %t.mlir

// CHECK:      %[[W1:.*]] = bitmod.param "fc1.weight" : tensor<4x256xf32>
// CHECK-NEXT: %[[Q1:.*]] = bitmod.quantize %[[W1]] into "fc1.weight" : tensor<4x256xf32> -> !bitmod.qweight<4x256, bitmod3, 128>
// CHECK-NEXT: %[[B1:.*]] = bitmod.param "fc1.bias" : tensor<4xf32>
// CHECK-NEXT: %[[Y1:.*]] = bitmod.matmul %{{.*}}, %[[Q1]] bias %[[B1]] : (tensor<3x256xf32>, !bitmod.qweight<4x256, bitmod3, 128>, tensor<4xf32>) -> tensor<3x4xf32>
// CHECK-NEXT: %[[W2:.*]] = bitmod.param "fc2.weight" : tensor<2x4xf32>
// CHECK-NEXT: %[[Q2:.*]] = bitmod.quantize %[[W2]] into "fc2.weight" : tensor<2x4xf32> -> !bitmod.qweight<2x4, bitmod3, 4>
// CHECK-NEXT: bitmod.matmul %[[Y1]], %[[Q2]] : (tensor<3x4xf32>, !bitmod.qweight<2x4, bitmod3, 4>) -> tensor<3x2xf32>
