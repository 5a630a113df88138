// Bad options and an MX group size other than its block: one diagnostic line, exit 1 (a
// group size that does not divide K is no error: the last group is shorter).
// RUN: not bitmod-opt %S/Inputs/two-layers.mlir -p 'bitmod-quantize{dtype=int9}' 2>&1 | filecheck %s --check-prefix=CK-DTYPE
// RUN: not bitmod-opt %S/Inputs/two-layers.mlir -p 'bitmod-quantize{group-size=-4}' 2>&1 | filecheck %s --check-prefix=CK-GROUP
// RUN: not bitmod-opt %S/Inputs/two-layers.mlir -p 'bitmod-quantize{scale-bits=12}' 2>&1 | filecheck %s --check-prefix=CK-SB
// RUN: not bitmod-opt %S/Inputs/two-layers.mlir -p 'bitmod-quantize{layers=fc1-int8}' 2>&1 | filecheck %s --check-prefix=CK-SYNTAX
// RUN: not bitmod-opt %S/Inputs/two-layers.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize{layers=fc7:int8}' 2>&1 | filecheck %s --check-prefix=CK-LAYER
// RUN: not bitmod-opt %S/Inputs/two-layers.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize{dtype=mxfp4 group-size=64}' -o %t.out 2>&1 | filecheck %s --check-prefix=CK-DIVIDE
// RUN: not test -e %t.out

// CK-DTYPE: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option dtype: unknown bitmod dtype 'int9'; valid dtypes: int3, int3_asym,
// CK-DTYPE-NOT: Traceback
// CK-GROUP: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option group-size must be a positive integer, got -4
// CK-SB: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option scale-bits must be 0 (FP16 scales) or 2..8, got 12
// CK-SYNTAX: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option layers: malformed layers entry 'fc1-int8' (expected LAYER:DTYPE or LAYER:DTYPE:GROUP)
// CK-LAYER: two-layers.mlir:1:1: error: 'builtin.module' op bitmod-quantize: layers= names fc7, which the module does not have (layers: fc1, fc2)
// CK-DIVIDE: two-layers.mlir:12:3: error: 'bitmod.param' op cannot quantize 'fc1.weight': layer 'fc1': mxfp4 uses the MX block size 32, not group size 64
