// torch-mlir's tm_tensor.scan (torch.cumsum; Hugging Face Llama's position ids), inclusive and
// exclusive, in the custom form and the generic form; both parse back to the same module.
// RUN: bitmod-opt %s | filecheck %s
// RUN: bitmod-opt %s | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s --print-op-generic | bitmod-opt - | filecheck %s

func.func @f(%x: tensor<2x5xi64>, %y: tensor<3x4xf32>) -> (tensor<2x5xi64>, tensor<3x4xf32>, tensor<4xf32>) {
  %zi = arith.constant 0 : i64
  %zf = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x5xi64>
  %out = linalg.fill ins(%zi : i64) outs(%e : tensor<2x5xi64>) -> tensor<2x5xi64>
  %ea = tensor.empty() : tensor<2xi64>
  %acc = linalg.fill ins(%zi : i64) outs(%ea : tensor<2xi64>) -> tensor<2xi64>
  %s:2 = tm_tensor.scan dimension(1) inclusive(true) ins(%x : tensor<2x5xi64>) outs(%out, %acc : tensor<2x5xi64>, tensor<2xi64>) {
  ^bb0(%a: i64, %b: i64):
    %sum = arith.addi %a, %b : i64
    tm_tensor.yield %sum : i64
  } -> tensor<2x5xi64>, tensor<2xi64>
  %ef = tensor.empty() : tensor<3x4xf32>
  %eaf = tensor.empty() : tensor<4xf32>
  %accf = linalg.fill ins(%zf : f32) outs(%eaf : tensor<4xf32>) -> tensor<4xf32>
  %p:2 = tm_tensor.scan dimension(0) inclusive(false) ins(%y : tensor<3x4xf32>) outs(%ef, %accf : tensor<3x4xf32>, tensor<4xf32>) {
  ^bb0(%a: f32, %b: f32):
    %m = arith.maximumf %a, %b : f32
    tm_tensor.yield %m : f32
  } -> tensor<3x4xf32>, tensor<4xf32>
  func.return %s#0, %p#0, %p#1 : tensor<2x5xi64>, tensor<3x4xf32>, tensor<4xf32>
}

// CHECK:      tm_tensor.scan dimension(1) inclusive(true) ins(%{{.*}} : tensor<2x5xi64>) outs(%{{.*}}, %{{.*}} : tensor<2x5xi64>, tensor<2xi64>) {
// CHECK-NEXT: ^{{.*}}(%[[A:.*]]: i64, %[[B:.*]]: i64):
// CHECK-NEXT:   %[[S:.*]] = arith.addi %[[A]], %[[B]] : i64
// CHECK-NEXT:   tm_tensor.yield %[[S]] : i64
// CHECK-NEXT: } -> tensor<2x5xi64>, tensor<2xi64>
// CHECK:      tm_tensor.scan dimension(0) inclusive(false) ins(%{{.*}} : tensor<3x4xf32>) outs(%{{.*}}, %{{.*}} : tensor<3x4xf32>, tensor<4xf32>) {
