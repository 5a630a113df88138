// Every verifier error of tm_tensor.scan, one per chunk, at the op.
// RUN: bitmod-opt %s --split-input-file --verify-diagnostics

func.func @f(%x: tensor<2x5xi64>, %o: tensor<2x5xi64>, %a: tensor<5xi64>) {
  // expected-error@+1 {{the accumulator must have the input's shape without dimension 1, [2], not [5]}}
  %s:2 = tm_tensor.scan dimension(1) inclusive(true) ins(%x : tensor<2x5xi64>) outs(%o, %a : tensor<2x5xi64>, tensor<5xi64>) {
  ^bb0(%p: i64, %q: i64):
    tm_tensor.yield %p : i64
  } -> tensor<2x5xi64>, tensor<5xi64>
  func.return
}

// -----

func.func @f(%x: tensor<2x5xi64>, %o: tensor<2x5xi64>, %a: tensor<2xi64>) {
  // expected-error@+1 {{dimension 2 is not one of the input's 2}}
  %s:2 = tm_tensor.scan dimension(2) inclusive(true) ins(%x : tensor<2x5xi64>) outs(%o, %a : tensor<2x5xi64>, tensor<2xi64>) {
  ^bb0(%p: i64, %q: i64):
    tm_tensor.yield %p : i64
  } -> tensor<2x5xi64>, tensor<2xi64>
  func.return
}

// -----

func.func @f(%x: tensor<2x5xi64>, %o: tensor<2x5xf32>, %a: tensor<2xi64>) {
  // expected-error@+1 {{the output tensor<2x5xf32> must be of the input's type tensor<2x5xi64>}}
  %s:2 = tm_tensor.scan dimension(1) inclusive(true) ins(%x : tensor<2x5xi64>) outs(%o, %a : tensor<2x5xf32>, tensor<2xi64>) {
  ^bb0(%p: i64, %q: i64):
    tm_tensor.yield %p : i64
  } -> tensor<2x5xf32>, tensor<2xi64>
  func.return
}

// -----

func.func @f(%x: tensor<2x5xi64>, %o: tensor<2x5xi64>, %a: tensor<2xi64>) {
  // expected-error@+1 {{the region takes two i64 arguments}}
  %s:2 = tm_tensor.scan dimension(1) inclusive(true) ins(%x : tensor<2x5xi64>) outs(%o, %a : tensor<2x5xi64>, tensor<2xi64>) {
  ^bb0(%p: i64):
    tm_tensor.yield %p : i64
  } -> tensor<2x5xi64>, tensor<2xi64>
  func.return
}

// -----

func.func @f(%x: tensor<2x5xi64>, %o: tensor<2x5xi64>) {
  // expected-error@+1 {{tm_tensor.scan takes one input and two outputs (the output and the accumulator), not 1 and 1}}
  %s = tm_tensor.scan dimension(1) inclusive(true) ins(%x : tensor<2x5xi64>) outs(%o : tensor<2x5xi64>) {
  ^bb0(%p: i64, %q: i64):
    tm_tensor.yield %p : i64
  } -> tensor<2x5xi64>
  func.return
}
