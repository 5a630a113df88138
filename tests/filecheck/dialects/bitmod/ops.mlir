// Every bitmod op, attribute and type in the custom form (optional operands and properties
// present and absent, default and explicit scale bits, a batched activation, a float weight,
// a run-time quantized weight per batch slice)
// and in the generic form; both forms parse back to the same module.
// RUN: bitmod-opt %s | filecheck %s
// RUN: bitmod-opt %s | bitmod-opt - | filecheck %s
// RUN: bitmod-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC
// RUN: bitmod-opt %s --print-op-generic | bitmod-opt - | filecheck %s

func.func @f(%x: tensor<4x64xf32>, %xb: tensor<2x3x64xf32>, %v: tensor<8x64xf32>) -> (tensor<4x128xf32>, tensor<2x3x128xf32>, tensor<4x8xf32>, tensor<4x128xf32>) {
  %w = bitmod.param "fc1.weight" {dtype = #bitmod.dtype<bitmod3>} : tensor<128x64xf32>
  %b = bitmod.param "fc1.bias" : tensor<128xf32>
  %q = bitmod.quantize %w : tensor<128x64xf32> -> !bitmod.qweight<128x64, bitmod3, 32>
  %q4 = bitmod.quantize %w into "fc1.weight" {note = "stored"} : tensor<128x64xf32> -> !bitmod.qweight<128x64, int4_asym, 64, sb=4>
  %q0 = bitmod.quantize %w into "fc1.weight.mx" : tensor<128x64xf32> -> !bitmod.qweight<128x64, mxfp4, 32, sb=0>
  %y = bitmod.matmul %x, %q bias %b : (tensor<4x64xf32>, !bitmod.qweight<128x64, bitmod3, 32>, tensor<128xf32>) -> tensor<4x128xf32>
  %yb = bitmod.matmul %xb, %q4 : (tensor<2x3x64xf32>, !bitmod.qweight<128x64, int4_asym, 64, sb=4>) -> tensor<2x3x128xf32>
  %z = bitmod.matmul %x, %v : (tensor<4x64xf32>, tensor<8x64xf32>) -> tensor<4x8xf32>
  %m = bitmod.matmul %x, %q0 : (tensor<4x64xf32>, !bitmod.qweight<128x64, mxfp4, 32, sb=0>) -> tensor<4x128xf32>
  func.return %y, %yb, %z, %m : tensor<4x128xf32>, tensor<2x3x128xf32>, tensor<4x8xf32>, tensor<4x128xf32>
}
func.func @kv(%a: tensor<2x5x8xf32>, %bt: tensor<2x7x8xf32>) -> tensor<2x5x7xf32> {
  %q = bitmod.quantize %bt runtime into "matmul1.rhs" : tensor<2x7x8xf32> -> !bitmod.qweight<2x7x8, int4, 8>
  %y = bitmod.matmul %a, %q : (tensor<2x5x8xf32>, !bitmod.qweight<2x7x8, int4, 8>) -> tensor<2x5x7xf32>
  func.return %y : tensor<2x5x7xf32>
}

// CHECK:      builtin.module {
// CHECK-NEXT:   func.func @f(%x: tensor<4x64xf32>, %xb: tensor<2x3x64xf32>, %v: tensor<8x64xf32>) -> (tensor<4x128xf32>, tensor<2x3x128xf32>, tensor<4x8xf32>, tensor<4x128xf32>) {
// CHECK-NEXT:     %w = bitmod.param "fc1.weight" {dtype = #bitmod.dtype<bitmod3>} : tensor<128x64xf32>
// CHECK-NEXT:     %b = bitmod.param "fc1.bias" : tensor<128xf32>
// CHECK-NEXT:     %q = bitmod.quantize %w : tensor<128x64xf32> -> !bitmod.qweight<128x64, bitmod3, 32>
// CHECK-NEXT:     %q4 = bitmod.quantize %w into "fc1.weight" {note = "stored"} : tensor<128x64xf32> -> !bitmod.qweight<128x64, int4_asym, 64, sb=4>
// CHECK-NEXT:     %q0 = bitmod.quantize %w into "fc1.weight.mx" : tensor<128x64xf32> -> !bitmod.qweight<128x64, mxfp4, 32, sb=0>
// CHECK-NEXT:     %y = bitmod.matmul %x, %q bias %b : (tensor<4x64xf32>, !bitmod.qweight<128x64, bitmod3, 32>, tensor<128xf32>) -> tensor<4x128xf32>
// CHECK-NEXT:     %yb = bitmod.matmul %xb, %q4 : (tensor<2x3x64xf32>, !bitmod.qweight<128x64, int4_asym, 64, sb=4>) -> tensor<2x3x128xf32>
// CHECK-NEXT:     %z = bitmod.matmul %x, %v : (tensor<4x64xf32>, tensor<8x64xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:     %m = bitmod.matmul %x, %q0 : (tensor<4x64xf32>, !bitmod.qweight<128x64, mxfp4, 32, sb=0>) -> tensor<4x128xf32>
// CHECK-NEXT:     func.return %y, %yb, %z, %m : tensor<4x128xf32>, tensor<2x3x128xf32>, tensor<4x8xf32>, tensor<4x128xf32>
// CHECK-NEXT:   }
// CHECK-NEXT:   func.func @kv(%a: tensor<2x5x8xf32>, %bt: tensor<2x7x8xf32>) -> tensor<2x5x7xf32> {
// CHECK-NEXT:     %q = bitmod.quantize %bt runtime into "matmul1.rhs" : tensor<2x7x8xf32> -> !bitmod.qweight<2x7x8, int4, 8>
// CHECK-NEXT:     %y = bitmod.matmul %a, %q : (tensor<2x5x8xf32>, !bitmod.qweight<2x7x8, int4, 8>) -> tensor<2x5x7xf32>
// CHECK-NEXT:     func.return %y : tensor<2x5x7xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// GENERIC: %w = "bitmod.param"() <{name = "fc1.weight"}> {dtype = #bitmod.dtype<bitmod3>} : () -> tensor<128x64xf32>
// GENERIC: %b = "bitmod.param"() <{name = "fc1.bias"}> : () -> tensor<128xf32>
// GENERIC: %q = "bitmod.quantize"(%w) : (tensor<128x64xf32>) -> !bitmod.qweight<128x64, bitmod3, 32>
// GENERIC: %q4 = "bitmod.quantize"(%w) <{entry = "fc1.weight"}> {note = "stored"} : (tensor<128x64xf32>) -> !bitmod.qweight<128x64, int4_asym, 64, sb=4>
// GENERIC: %q0 = "bitmod.quantize"(%w) <{entry = "fc1.weight.mx"}> : (tensor<128x64xf32>) -> !bitmod.qweight<128x64, mxfp4, 32, sb=0>
// GENERIC: %y = "bitmod.matmul"(%x, %q, %b) : (tensor<4x64xf32>, !bitmod.qweight<128x64, bitmod3, 32>, tensor<128xf32>) -> tensor<4x128xf32>
// GENERIC: %yb = "bitmod.matmul"(%xb, %q4) : (tensor<2x3x64xf32>, !bitmod.qweight<128x64, int4_asym, 64, sb=4>) -> tensor<2x3x128xf32>
// GENERIC: %z = "bitmod.matmul"(%x, %v) : (tensor<4x64xf32>, tensor<8x64xf32>) -> tensor<4x8xf32>
// GENERIC: %m = "bitmod.matmul"(%x, %q0) : (tensor<4x64xf32>, !bitmod.qweight<128x64, mxfp4, 32, sb=0>) -> tensor<4x128xf32>
