// A weight shared by two products (two bitmod.param ops of one name) is quantized once
// and both products take the same quantized entry.
// RUN: bitmod-opt %S/../convert-linalg-to-bitmod/weight-forms.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize{layers=fc1:int4}' | filecheck %s

// CHECK:      %[[Q1:.*]] = bitmod.quantize %{{.*}} into "fc1.weight" : tensor<3x4xf32> -> !bitmod.qweight<3x4, int4, 4>
// CHECK:      bitmod.matmul %{{.*}}, %[[Q1]] bias
// CHECK:      %[[Q2:.*]] = bitmod.quantize %{{.*}} into "fc1.weight" : tensor<3x4xf32> -> !bitmod.qweight<3x4, int4, 4>
// CHECK-NEXT: bitmod.matmul %{{.*}}, %[[Q2]] :
// CHECK:      bitmod.quantize %{{.*}} into "fc2.weight" : tensor<2x4xf32> -> !bitmod.qweight<2x4, bitmod3, 4>
