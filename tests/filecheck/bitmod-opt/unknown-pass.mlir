// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod,bitmod-qantize' 2>&1 | filecheck %s
// RUN: not bitmod-opt %s --pass-pipeline='builtin.module(canonicalise)' 2>&1 | filecheck %s --check-prefix=MLIR
// RUN: not bitmod-opt %s --pipeline=bitmod-fast 2>&1 | filecheck %s --check-prefix=PRESET
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod,{' 2>&1 | filecheck %s --check-prefix=SYNTAX

func.func @f() {
  func.return
}

// CHECK: <pass-pipeline>:1:26: error: unknown pass 'bitmod-qantize' (known passes: convert-linalg-to-bitmod, bitmod-quantize, bitmod-tile, bitmod-lower-to-isa)
// CHECK-NOT: {{.}}
// MLIR: <pass-pipeline>:1:16: error: unknown pass 'canonicalise'
// PRESET: <pass-pipeline>:1:1: error: unknown pipeline preset 'bitmod-fast' (presets: bitmod-default, bitmod-frontend)
// SYNTAX: <pass-pipeline>:1:26: error: malformed pass pipeline: Expected pass name here
