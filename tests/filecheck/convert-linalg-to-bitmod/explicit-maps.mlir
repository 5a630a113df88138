// Upstream MLIR's explicit-maps syntax of contractions, as newer torch-mlir writes X.W^T:
// `linalg.matmul indexing_maps = [...] ins(...) outs(...)`. A constant [N, K] weight under the
// (i,k),(j,k) maps is a linear layer as it stands (no transpose to fold), a run-time [N, K]
// operand is an activation product quantized without a transpose, and maps that are no
// product the converter knows (A^T.B) leave the op on the host, printed with its maps.
// RUN: bitmod-opt %s | filecheck %s --check-prefix=ROUND
// RUN: bitmod-opt %s | bitmod-opt | filecheck %s --check-prefix=ROUND
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod | filecheck %s

#a = affine_map<(d0, d1, d2) -> (d0, d2)>
#bt = affine_map<(d0, d1, d2) -> (d1, d2)>
#at = affine_map<(d0, d1, d2) -> (d2, d0)>
#b = affine_map<(d0, d1, d2) -> (d2, d1)>
#c = affine_map<(d0, d1, d2) -> (d0, d1)>
func.func @products(%x: tensor<2x4xf32>, %k: tensor<3x4xf32>, %xt: tensor<4x2xf32>, %v: tensor<4x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) {
  %zero = arith.constant 0.000000e+00 : f32
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]> : tensor<3x4xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  %lin = linalg.matmul indexing_maps = [#a, #bt, #c] ins(%x, %w : tensor<2x4xf32>, tensor<3x4xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  %act = linalg.matmul indexing_maps = [#a, #bt, #c] ins(%x, %k : tensor<2x4xf32>, tensor<3x4xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  %host = linalg.matmul indexing_maps = [#at, #b, #c] ins(%xt, %v : tensor<4x2xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  %plain = linalg.matmul indexing_maps = [#a, #b, #c] ins(%x, %v : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %lin, %act, %host, %plain : tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>
}

// The maps survive a print and a re-parse; the default ones print as the short form.
// ROUND:      %lin = linalg.matmul indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>] ins(%x, %w : tensor<2x4xf32>, tensor<3x4xf32>)
// ROUND:      %host = linalg.matmul indexing_maps = [affine_map<(d0, d1, d2) -> (d2, d0)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>] ins(%xt, %v : tensor<4x2xf32>, tensor<4x3xf32>)
// ROUND:      %plain = linalg.matmul ins(%x, %v : tensor<2x4xf32>, tensor<4x3xf32>)

// CHECK-LABEL: func.func @products
// CHECK:         %[[W:.*]] = bitmod.param "fc1.weight" : tensor<3x4xf32>
// CHECK-NEXT:    %lin = bitmod.matmul %x, %[[W]] : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:    %[[QK:.*]] = bitmod.quantize %k runtime into "matmul1.rhs" : tensor<3x4xf32> -> !bitmod.qweight<3x4, int8, 4>
// CHECK-NEXT:    %act = bitmod.matmul %x, %[[QK]] : (tensor<2x4xf32>, !bitmod.qweight<3x4, int8, 4>) -> tensor<2x3xf32>
// CHECK:         %host = linalg.matmul indexing_maps = [affine_map<(d0, d1, d2) -> (d2, d0)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>]
// CHECK:         linalg.transpose ins(%v:tensor<4x3xf32>)
// CHECK:         %plain = bitmod.matmul %x
