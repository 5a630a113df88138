// torch-mlir's export of the 3-layer MLP, dense_resource blobs and all, taken as is.
// RUN: bitmod-opt %examples/mlp/mlp.mlir -p convert-linalg-to-bitmod -o %t.mlir
// RUN: filecheck %s < %t.mlir

// CHECK:      builtin.module attributes {bitmod.params = "{{.*}}.params.safetensors", bitmod.params_sha256 = "{{[0-9a-f]+}}"} {
// CHECK:        func.func @main(%[[X:.*]]: tensor<4x64xf32>) -> tensor<4x32xf32> {
// CHECK-NOT:    linalg.transpose
// CHECK:          %[[W1:.*]] = bitmod.param "fc1.weight" : tensor<128x64xf32>
// CHECK-NEXT:     %[[B1:.*]] = bitmod.param "fc1.bias" : tensor<128xf32>
// CHECK-NEXT:     %[[Y1:.*]] = bitmod.matmul %[[X]], %[[W1]] bias %[[B1]] : (tensor<4x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> tensor<4x128xf32>
// The ReLU between the layers stays a host linalg.generic.
// CHECK-NEXT:     %[[R1:.*]] = linalg.generic {{.*}} ins(%[[Y1]] : tensor<4x128xf32>)
// CHECK:            arith.cmpf ugt
// CHECK:          bitmod.param "fc2.weight" : tensor<128x128xf32>
// CHECK:          bitmod.matmul %[[R1]], {{.*}} -> tensor<4x128xf32>
// CHECK:          %[[W3:.*]] = bitmod.param "fc3.weight" : tensor<32x128xf32>
// CHECK-NEXT:     %[[B3:.*]] = bitmod.param "fc3.bias" : tensor<32xf32>
// CHECK-NEXT:     %[[Y3:.*]] = bitmod.matmul %{{.*}}, %[[W3]] bias %[[B3]] : (tensor<4x128xf32>, tensor<32x128xf32>, tensor<32xf32>) -> tensor<4x32xf32>
// CHECK-NEXT:     func.return %[[Y3]] : tensor<4x32xf32>
// CHECK-NOT:    linalg.matmul
// CHECK-NOT:    linalg.fill
// The weights left the IR: no blob is printed any more.
// CHECK-NOT:    dialect_resources
