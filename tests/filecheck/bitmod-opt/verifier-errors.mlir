// More verifier and archive errors, one line each.
// RUN: not bitmod-opt %S/Inputs/bad-bias.mlir 2>&1 | filecheck %s --check-prefix=BIAS
// RUN: not bitmod-opt %S/Inputs/bad-group.mlir 2>&1 | filecheck %s --check-prefix=GROUP
// RUN: not bitmod-opt %S/Inputs/missing-archive.mlir -p bitmod-quantize 2>&1 | filecheck %s --check-prefix=ARCHIVE

// BIAS: bad-bias.mlir:4:3: error: 'bitmod.matmul' op operand 'bias' tensor<3xf32> must have shape [4] (N of operand 'weight')
// GROUP: bad-group.mlir:3:65: error: qweight of MX format 'mxfp4' needs group size 32 (its block), got 48
// ARCHIVE: missing-archive.mlir:1:1: error: 'builtin.module' op parameter archive {{.*}}no-such.params.safetensors does not exist
