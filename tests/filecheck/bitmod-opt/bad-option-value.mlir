// RUN: not bitmod-opt %s -p 'bitmod-quantize{group-size=abc}' 2>&1 | filecheck %s
// RUN: not bitmod-opt %s -p 'convert-linalg-to-bitmod{bogus=1}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not bitmod-opt %s -p 'bitmod-quantize{progress=maybe}' 2>&1 | filecheck %s --check-prefix=BOOL
// RUN: not bitmod-opt %s --emit=elf 2>&1 | filecheck %s --check-prefix=EMIT

func.func @f() {
  func.return
}

// CHECK: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option 'group-size' expects int, got 'abc'
// CHECK-NOT: {{.}}
// UNKNOWN: <pass-pipeline>:1:1: error: pass 'convert-linalg-to-bitmod': unknown option 'bogus' (options: none)
// BOOL: <pass-pipeline>:1:1: error: pass 'bitmod-quantize': option 'progress' expects bool, got 'maybe'
// EMIT: bitmod-opt: error: argument --emit: invalid choice: 'elf' (choose from {{.*}}) (see --help)
