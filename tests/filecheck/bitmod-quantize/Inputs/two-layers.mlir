// Two linear layers as torch-mlir writes them: fc1 [N=4, K=256] and fc2 [N=2, K=4].
// Weights are splats so that the file stays small; quantization does not care.
func.func @two(%x: tensor<3x256xf32>) -> tensor<3x2xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %w1 = arith.constant dense<0.125> : tensor<4x256xf32>
  %b1 = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %w2 = arith.constant dense<[[0.5, -1.0, 0.25, 2.0], [-0.75, 0.5, 1.5, -2.0]]> : tensor<2x4xf32>
  %e1 = tensor.empty() : tensor<256x4xf32>
  %w1t = linalg.transpose ins(%w1 : tensor<4x256xf32>) outs(%e1 : tensor<256x4xf32>) permutation = [1, 0]
  %o1 = tensor.empty() : tensor<3x4xf32>
  %a1 = linalg.fill ins(%zero : f32) outs(%o1 : tensor<3x4xf32>) -> tensor<3x4xf32>
  %y1 = linalg.matmul ins(%x, %w1t : tensor<3x256xf32>, tensor<256x4xf32>) outs(%a1 : tensor<3x4xf32>) -> tensor<3x4xf32>
  %y1b = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%y1, %b1 : tensor<3x4xf32>, tensor<4xf32>) outs(%o1 : tensor<3x4xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %s = arith.addf %in, %in_0 : f32
    linalg.yield %s : f32
  } -> tensor<3x4xf32>
  %e2 = tensor.empty() : tensor<4x2xf32>
  %w2t = linalg.transpose ins(%w2 : tensor<2x4xf32>) outs(%e2 : tensor<4x2xf32>) permutation = [1, 0]
  %o2 = tensor.empty() : tensor<3x2xf32>
  %a2 = linalg.fill ins(%zero : f32) outs(%o2 : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y2 = linalg.matmul ins(%y1b, %w2t : tensor<3x4xf32>, tensor<4x2xf32>) outs(%a2 : tensor<3x2xf32>) -> tensor<3x2xf32>
  func.return %y2 : tensor<3x2xf32>
}
