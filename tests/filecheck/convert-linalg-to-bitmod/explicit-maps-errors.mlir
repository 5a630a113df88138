// Explicit maps that are not three affine maps, or that do not fit the operands' shapes, are
// one located error each (the maps at their first character, the shapes at the op).
// RUN: not bitmod-opt %S/Inputs/maps-shape.mlir 2>&1 | filecheck %s --check-prefix=SHAPE
// RUN: not bitmod-opt %S/Inputs/maps-two-maps.mlir 2>&1 | filecheck %s --check-prefix=COUNT
// RUN: not bitmod-opt %S/Inputs/maps-not-maps.mlir 2>&1 | filecheck %s --check-prefix=KIND

// SHAPE: maps-shape.mlir:5:3: error: 'linalg.matmul' op inferred input/output operand #1 has shape's dimension #1 to be 4, but found 3
// SHAPE-NOT: {{.}}
// COUNT: maps-two-maps.mlir:5:38: error: linalg.matmul takes 3 indexing maps (A, B, C), not 2
// COUNT-NOT: {{.}}
// KIND: maps-not-maps.mlir:5:38: error: indexing_maps must be an array of affine maps
// KIND-NOT: {{.}}
