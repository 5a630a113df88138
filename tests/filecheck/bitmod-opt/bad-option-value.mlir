// RUN: not bitmod-opt %s -p 'bitmod-quantize{group-size=abc}' 2>&1 | filecheck %s
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod{bogus=1}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not bitmod-opt %s -p 'bitmod-quantize{progress=maybe}' 2>&1 | filecheck %s --check-prefix=BOOL
// RUN: not bitmod-opt %s --emit=elf 2>&1 | filecheck %s --check-prefix=EMIT
// RUN: not bitmod-opt %s -p 'bitmod-quantize{dtype=bitmod3 dtype=int8}' 2>&1 | filecheck %s --check-prefix=TWICE
// RUN: not bitmod-opt %s -p 'bitmod-quantize{group-size=64 group_size=32}' 2>&1 | filecheck %s --check-prefix=SPELLINGS
// RUN: not bitmod-opt %s -p 'bitmod-quantize{progress}' 2>&1 | filecheck %s --check-prefix=BARE
// RUN: not bitmod-opt %s -p 'bitmod-tile{rows=4 cols=4' 2>&1 | filecheck %s --check-prefix=BRACE
// RUN: not bitmod-opt %s -p 'bitmod-quantize{layers="fc1:int8}' 2>&1 | filecheck %s --check-prefix=QUOTE
// RUN: not bitmod-opt %s --pass-pipeline='builtin.module(bitmod-tile' 2>&1 | filecheck %s --check-prefix=ANCHOR
// RUN: not bitmod-opt %s --pass-pipeline='builtin.module(func.func(bitmod-tile))' 2>&1 | filecheck %s --check-prefix=NESTED
// RUN: not bitmod-opt %s -p 'bitmod-tile{rows=8}x' 2>&1 | filecheck %s --check-prefix=AFTER

func.func @f() {
  func.return
}

// CHECK: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option 'group-size' expects int, got 'abc'
// CHECK-NOT: {{.}}
// UNKNOWN: <pass-pipeline>:1:1: error: pass 'convert-linalg-to-bitmod': unknown option 'bogus' (options: kv-dtype, kv-group-size)
// BOOL: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option 'progress' expects bool, got 'maybe'
// EMIT: bitmod-opt: error: argument --emit: invalid choice: 'elf' (choose from {{.*}}) (see --help)
// An option given twice is an error naming it (it used to be "last wins"), in either spelling.
// TWICE: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': 'dtype' given twice
// TWICE-NOT: {{.}}
// SPELLINGS: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option 'group-size' given twice
// BARE: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': expected OPTION=VALUE, got 'progress'
// BRACE: <pass-pipeline>:1:12: error: malformed pass pipeline: '{' of the options of 'bitmod-tile' is never closed
// QUOTE: <pass-pipeline>:1:24: error: malformed pass pipeline: string is never closed
// An unclosed anchor is said to be one (it was "nested pipelines are not supported").
// ANCHOR: <pass-pipeline>:1:27: error: malformed pass pipeline: 'builtin.module(' is never closed: the pipeline must end with ')'
// NESTED: <pass-pipeline>:1:16: error: nested pass pipelines are not supported
// AFTER: <pass-pipeline>:1:20: error: malformed pass pipeline: Expected a comma after pass argument dict here
