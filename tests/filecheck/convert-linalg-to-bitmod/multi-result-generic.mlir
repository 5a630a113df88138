// A linalg.generic with two results, as torch-mlir prints softmax's max-with-index reduction:
// MLIR writes its result types in parentheses. It parses, survives the pass untouched and
// prints back in the same form (and the printed form parses again).
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod | filecheck %s
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod | bitmod-opt - | filecheck %s

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d0)>
func.func @argmax(%x: tensor<3x5xf32>, %m0: tensor<3xf32>, %i0: tensor<3xi64>) -> (tensor<3xf32>, tensor<3xi64>) {
  %r:2 = linalg.generic {indexing_maps = [#map, #map1, #map1], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<3x5xf32>) outs(%m0, %i0 : tensor<3xf32>, tensor<3xi64>) {
  ^bb0(%in: f32, %out: f32, %out_i: i64):
    %idx = linalg.index 1 : index
    %j = arith.index_cast %idx : index to i64
    %max = arith.maximumf %in, %out : f32
    %gt = arith.cmpf ogt, %in, %out : f32
    %sel = arith.select %gt, %j, %out_i : i64
    linalg.yield %max, %sel : f32, i64
  } -> (tensor<3xf32>, tensor<3xi64>)
  func.return %r#0, %r#1 : tensor<3xf32>, tensor<3xi64>
}

// CHECK:      %r, %r_1 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<3x5xf32>) outs(%m0, %i0 : tensor<3xf32>, tensor<3xi64>) {
// CHECK:        linalg.yield %max, %sel : f32, i64
// CHECK-NEXT: } -> (tensor<3xf32>, tensor<3xi64>)
// CHECK-NEXT: func.return %r, %r_1 : tensor<3xf32>, tensor<3xi64>
