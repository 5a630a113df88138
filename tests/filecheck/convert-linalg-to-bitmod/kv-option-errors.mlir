// The run-time format of K/V is checked when the pipeline is read: an unknown format, one
// without a bit-serial lowering (MX, OliVe) and a group size the PE cannot step through are
// one error each, located at the pass in the pipeline string, before any pass runs.
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod{kv-dtype=int9}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod{kv-dtype=mxfp4}' 2>&1 | filecheck %s --check-prefix=MX
// RUN: not bitmod-opt %s -p 'bitmod-tile,convert-linalg-to-bitmod{kv-dtype=olive4}' 2>&1 | filecheck %s --check-prefix=OLIVE
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod{kv-group-size=6}' 2>&1 | filecheck %s --check-prefix=GROUP
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod{kv-group-size=0}' 2>&1 | filecheck %s --check-prefix=ZERO

func.func @f(%a: tensor<2x3x4xf32>, %b: tensor<2x4x3xf32>) -> tensor<2x3x3xf32> {
  %zero = arith.constant 0.000000e+00 : f32
  %e = tensor.empty() : tensor<2x3x3xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3x3xf32>) -> tensor<2x3x3xf32>
  %y = linalg.batch_matmul ins(%a, %b : tensor<2x3x4xf32>, tensor<2x4x3xf32>) outs(%z : tensor<2x3x3xf32>) -> tensor<2x3x3xf32>
  func.return %y : tensor<2x3x3xf32>
}

// UNKNOWN: <pass-pipeline>:1:1: error: pass 'convert-linalg-to-bitmod': kv-dtype: unknown bitmod dtype 'int9'; valid dtypes: {{.*}} (or 'host')
// UNKNOWN-NOT: {{.}}
// MX: <pass-pipeline>:1:1: error: pass 'convert-linalg-to-bitmod': kv-dtype: format mxfp4 has no bit-serial lowering (family 'mx'); quantize this layer to an accelerated format or keep it on the host
// MX-NOT: {{.}}
// OLIVE: <pass-pipeline>:1:13: error: pass 'convert-linalg-to-bitmod': kv-dtype: format olive4 has no bit-serial lowering (family 'olive'); quantize this layer to an accelerated format or keep it on the host
// OLIVE-NOT: {{.}}
// GROUP: <pass-pipeline>:1:1: error: pass 'convert-linalg-to-bitmod': kv-group-size must be a positive multiple of 4 (the PE takes 4 values a cycle), got 6
// GROUP-NOT: {{.}}
// ZERO: <pass-pipeline>:1:1: error: pass 'convert-linalg-to-bitmod': kv-group-size must be a positive multiple of 4 (the PE takes 4 values a cycle), got 0
