// stdin input, -o output with the archive written next to it, and --list-passes.
// RUN: rm -rf %t.dir && mkdir -p %t.dir
// RUN: bitmod-opt - -p convert-linalg-to-bitmod -o %t.dir/out.mlir < %s
// RUN: filecheck %s < %t.dir/out.mlir
// RUN: test -f %t.dir/out.params.safetensors
// The output reads back with its archive, from another directory.
// RUN: bitmod-opt %t.dir/out.mlir -p bitmod-quantize -o %t.dir/q.mlir
// RUN: filecheck %s --check-prefix=QUANT < %t.dir/q.mlir
// RUN: test -f %t.dir/q.params.safetensors
// RUN: bitmod-opt --list-passes | filecheck %s --check-prefix=LIST

func.func @f(%x: tensor<2x4xf32>) -> tensor<2x3xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %w = arith.constant dense<[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]> : tensor<4x3xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %y : tensor<2x3xf32>
}

// The IR names its archive and pins it by the SHA-256 of its bytes.
// CHECK: builtin.module attributes {bitmod.params = "out.params.safetensors", bitmod.params_sha256 = "{{[0-9a-f]+}}"}
// CHECK: bitmod.param "fc1.weight" : tensor<3x4xf32>
// QUANT: builtin.module attributes {bitmod.params = "q.params.safetensors", bitmod.params_sha256 = "{{[0-9a-f]+}}"}
// QUANT: bitmod.quantize %{{.*}} into "fc1.weight" : tensor<3x4xf32> -> !bitmod.qweight<3x4, bitmod3, 4>
// LIST: convert-linalg-to-bitmod
// LIST: bitmod-quantize
// LIST: bitmod-tile
// LIST: bitmod-lower-to-isa
// LIST: bitmod-default: convert-linalg-to-bitmod,bitmod-quantize{dtype=bitmod3 group-size=128 scale-bits=8},bitmod-tile,bitmod-lower-to-isa
