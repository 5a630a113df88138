// ROUNDTRIP: skip (malformed on purpose)
// RUN: not bitmod-opt %s 2>&1 | filecheck %s
// RUN: not bitmod-opt %s -o %t.out 2>&1 | filecheck %s
// RUN: not test -e %t.out
// RUN: not bitmod-opt - < %s 2>&1 | filecheck %s --check-prefix=STDIN

func.func @f(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %y = arith.addf %x, : tensor<2x4xf32>
  func.return %y : tensor<2x4xf32>
}

// CHECK: malformed-ir.mlir:8:23: error: {{.*}}
// CHECK-NOT: {{.}}
// STDIN: <stdin>:8:23: error:
