// Activation x activation products (both operands computed at run time), as torch-mlir
// writes attention: Q.K^T with K^T a linalg.transpose under a tensor.collapse_shape of
// batch and heads, P.V, and a plain linalg.matmul with a non-constant right operand. Each
// becomes a bitmod.matmul whose right operand B^T is quantized at run time (INT8 by
// default, groups along the reduction, a short reduction one group of ceil4(K)); K^T's
// transpose becomes K's own layout (the permutation with its last two entries swapped, no
// second transpose), V gets one. Lowered, each launch binds B^T as its weight and the
// program's qweight descriptor is one batch slice.
// RUN: bitmod-opt %s -p convert-linalg-to-bitmod | filecheck %s
// RUN: bitmod-opt %s -p "convert-linalg-to-bitmod{kv-dtype=int4 kv-group-size=4},bitmod-quantize,bitmod-tile,bitmod-lower-to-isa" | filecheck %s --check-prefix=LOWER
// RUN: bitmod-opt %s -p "convert-linalg-to-bitmod{kv-dtype=host}" | filecheck %s --check-prefix=HOST

func.func @attention(%q: tensor<2x3x4xf32>, %k: tensor<1x3x2x4xf32>, %v: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %et = tensor.empty() : tensor<1x2x4x3xf32>
  %kt = linalg.transpose ins(%k : tensor<1x3x2x4xf32>) outs(%et : tensor<1x2x4x3xf32>) permutation = [0, 2, 3, 1]
  %ktc = tensor.collapse_shape %kt [[0, 1], [2], [3]] : tensor<1x2x4x3xf32> into tensor<2x4x3xf32>
  %es = tensor.empty() : tensor<2x3x3xf32>
  %zs = linalg.fill ins(%zero : f32) outs(%es : tensor<2x3x3xf32>) -> tensor<2x3x3xf32>
  %s = linalg.batch_matmul ins(%q, %ktc : tensor<2x3x4xf32>, tensor<2x4x3xf32>) outs(%zs : tensor<2x3x3xf32>) -> tensor<2x3x3xf32>
  %eo = tensor.empty() : tensor<2x3x4xf32>
  %zo = linalg.fill ins(%zero : f32) outs(%eo : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %o = linalg.batch_matmul ins(%s, %v : tensor<2x3x3xf32>, tensor<2x3x4xf32>) outs(%zo : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  func.return %o : tensor<2x3x4xf32>
}

func.func @plain(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>) -> tensor<2x3xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %e = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %y : tensor<2x3xf32>
}

// CHECK:       bitmod.params =
// CHECK-LABEL: func.func @attention(%q: tensor<2x3x4xf32>, %k: tensor<1x3x2x4xf32>, %v: tensor<2x3x4xf32>)
// CHECK-NEXT:    %[[E:.*]] = tensor.empty() : tensor<1x2x3x4xf32>
// CHECK-NEXT:    %[[KT:.*]] = linalg.transpose ins(%k:tensor<1x3x2x4xf32>) outs(%[[E]]:tensor<1x2x3x4xf32>) permutation = [0, 2, 1, 3]
// CHECK-NEXT:    %[[KC:.*]] = tensor.collapse_shape %[[KT]] {{\[}}[0 : i64, 1 : i64], [2 : i64], [3 : i64]] : tensor<1x2x3x4xf32> into tensor<2x3x4xf32>
// CHECK-NEXT:    %[[QK:.*]] = bitmod.quantize %[[KC]] runtime into "matmul1.rhs" : tensor<2x3x4xf32> -> !bitmod.qweight<2x3x4, int8, 4>
// CHECK-NEXT:    %s = bitmod.matmul %q, %[[QK]] : (tensor<2x3x4xf32>, !bitmod.qweight<2x3x4, int8, 4>) -> tensor<2x3x3xf32>
// CHECK-NEXT:    %[[E2:.*]] = tensor.empty() : tensor<2x4x3xf32>
// CHECK-NEXT:    %[[VT:.*]] = linalg.transpose ins(%v:tensor<2x3x4xf32>) outs(%[[E2]]:tensor<2x4x3xf32>) permutation = [0, 2, 1]
// CHECK-NEXT:    %[[QV:.*]] = bitmod.quantize %[[VT]] runtime into "matmul2.rhs" : tensor<2x4x3xf32> -> !bitmod.qweight<2x4x3, int8, 4>
// CHECK-NEXT:    %o = bitmod.matmul %s, %[[QV]] : (tensor<2x3x3xf32>, !bitmod.qweight<2x4x3, int8, 4>) -> tensor<2x3x4xf32>
// CHECK-NEXT:    func.return %o : tensor<2x3x4xf32>
// CHECK-LABEL: func.func @plain(%x: tensor<2x4xf32>, %w: tensor<4x3xf32>)
// CHECK:         %[[WT:.*]] = linalg.transpose ins(%w:tensor<4x3xf32>) outs(%{{.*}}:tensor<3x4xf32>) permutation = [1, 0]
// CHECK-NEXT:    %[[QW:.*]] = bitmod.quantize %[[WT]] runtime into "matmul3.rhs" : tensor<3x4xf32> -> !bitmod.qweight<3x4, int8, 4>
// CHECK-NEXT:    %y = bitmod.matmul %x, %[[QW]] : (tensor<2x4xf32>, !bitmod.qweight<3x4, int8, 4>) -> tensor<2x3xf32>
// CHECK-NOT:     linalg.batch_matmul
// CHECK-NOT:     linalg.matmul

// LOWER-LABEL: func.func @attention
// LOWER:         %s = bsisa.launch @program[0] act @d0(%q) weight @d1(%{{.*}} : tensor<2x3x4xf32>) out @d2 : (tensor<2x3x4xf32>) -> tensor<2x3x3xf32>
// LOWER:         %o = bsisa.launch @program[1] act @d3(%s) weight @d4(%{{.*}} : tensor<2x4x3xf32>) out @d5 : (tensor<2x3x3xf32>) -> tensor<2x3x4xf32>
// LOWER-LABEL: func.func @plain
// LOWER:         %y = bsisa.launch @program[2] act @d6(%x) weight @d7(%{{.*}} : tensor<3x4xf32>) out @d8 : (tensor<2x4xf32>) -> tensor<2x3xf32>
// LOWER-NOT:     bitmod.quantize
// LOWER:       bsisa.program @program {
// LOWER-NEXT:    bsisa.desc @d0 act "attention.q" [3, 4]
// LOWER-NEXT:    bsisa.desc @d1 qweight "matmul1.rhs" [3, 4] fmt "int4" sb 8 g 4
// LOWER-NEXT:    bsisa.desc @d2 out "attention.s" [3, 3]
// LOWER-NEXT:    bsisa.desc @d3 act "attention.s" [3, 3]
// LOWER-NEXT:    bsisa.desc @d4 qweight "matmul2.rhs" [4, 3] fmt "int4" sb 8 g 4
// LOWER-NEXT:    bsisa.desc @d5 out "attention.result0" [3, 4]
// LOWER-NEXT:    bsisa.desc @d6 act "plain.x" [2, 4]
// LOWER-NEXT:    bsisa.desc @d7 qweight "matmul3.rhs" [3, 4] fmt "int4" sb 8 g 4
// LOWER-NEXT:    bsisa.desc @d8 out "plain.result0" [2, 3]
// LOWER:         bsisa.cfg.fmt "int4" sb 8 g 4

// HOST-NOT:    bitmod.
// HOST:        linalg.batch_matmul ins(%q, %ktc
// HOST:        linalg.batch_matmul ins(%s, %v
// HOST:        linalg.matmul ins(%x, %w
// HOST-NOT:    bitmod.
