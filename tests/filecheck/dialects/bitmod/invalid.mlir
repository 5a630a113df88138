// Every verifier error of the bitmod dialect, one per chunk, with its precise message at the
// op it names (types and attributes are checked where they are parsed). Not reachable from IR
// text: a !bitmod.qweight that is not 2-D or 3-D or has a zero dimension (its parser requires a
// static positive NxK shape first) and "<operand> must be a tensor" (the operand and result
// constraints report a non-tensor first, as below).
// ROUNDTRIP: skip (every chunk is an error on purpose; several do not parse)
// RUN: bitmod-opt %s --split-input-file --verify-diagnostics

// An unknown dtype.
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{unknown bitmod dtype 'int99'; valid dtypes: }}
  %w = bitmod.param "w" {dtype = #bitmod.dtype<int99>} : tensor<8x64xf32>
  func.return
}

// -----

// A dtype is a name.
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{expected a bitmod dtype name}}
  %w = bitmod.param "w" {dtype = #bitmod.dtype<5>} : tensor<8x64xf32>
  func.return
}

// -----

// A qweight's shape is static NxK.
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{expected a static positive NxK shape in !bitmod.qweight}}
  %q = bitmod.quantize %w : tensor<8x64xf32> -> !bitmod.qweight<?x64, int8, 32>
  func.return
}

// -----

// A qweight's group size is positive.
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{qweight group size must be positive, got 0}}
  %q = bitmod.quantize %w : tensor<8x64xf32> -> !bitmod.qweight<8x64, int8, 0>
  func.return
}

// -----

// A qweight's scale bits are 0 or 2..8.
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{qweight scale bits must be 0 (FP16 scales) or 2..8, got 9}}
  %q = bitmod.quantize %w : tensor<8x64xf32> -> !bitmod.qweight<8x64, int8, 32, sb=9>
  func.return
}

// -----

// An MX qweight's group is its block.
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{qweight of MX format 'mxfp4' needs group size 32 (its block), got 64}}
  %q = bitmod.quantize %w : tensor<8x64xf32> -> !bitmod.qweight<8x64, mxfp4, 64>
  func.return
}

// -----

// A qweight's dtype is known.
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{unknown bitmod dtype 'int99'}}
  %q = bitmod.quantize %w : tensor<8x64xf32> -> !bitmod.qweight<8x64, int99, 32>
  func.return
}

// -----

// A parameter has a name.
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{bitmod.param needs a non-empty parameter name}}
  %w = bitmod.param "" : tensor<8x64xf32>
  func.return
}

// -----

// A parameter is a tensor (result constraint).
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{i32 should be of base attribute tensor}}
  %w = bitmod.param "w" : i32
  func.return
}

// -----

// A parameter is 1-D or 2-D.
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{result must be 1-D or 2-D, got tensor<2x8x64xf32>}}
  %w = bitmod.param "w" : tensor<2x8x64xf32>
  func.return
}

// -----

// A parameter has a static shape.
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{result must have a static shape, got tensor<?x64xf32>}}
  %w = bitmod.param "w" : tensor<?x64xf32>
  func.return
}

// -----

// A parameter is float.
func.func @f(%x: tensor<4x64xf32>) {
  // expected-error@+1 {{result must have a float element type, got tensor<8x64xi32>}}
  %w = bitmod.param "w" : tensor<8x64xi32>
  func.return
}

// -----

// The quantized weight is 2-D.
func.func @f(%w: tensor<64xf32>) {
  // expected-error@+1 {{operand 'weight' must be 2-D, got tensor<64xf32>}}
  %q = bitmod.quantize %w : tensor<64xf32> -> !bitmod.qweight<8x64, int8, 32>
  func.return
}

// -----

// The quantized weight is static.
func.func @f(%w: tensor<?x64xf32>) {
  // expected-error@+1 {{operand 'weight' must have a static shape}}
  %q = bitmod.quantize %w : tensor<?x64xf32> -> !bitmod.qweight<8x64, int8, 32>
  func.return
}

// -----

// The quantized weight is float.
func.func @f(%w: tensor<8x64xi8>) {
  // expected-error@+1 {{operand 'weight' must have a float element type}}
  %q = bitmod.quantize %w : tensor<8x64xi8> -> !bitmod.qweight<8x64, int8, 32>
  func.return
}

// -----

// The result keeps the weight's shape.
func.func @f(%w: tensor<16x64xf32>) {
  // expected-error@+1 {{operand 'weight' has shape [16, 64] but the result !bitmod.qweight<8x64, int8, 32> has shape [8, 64]}}
  %q = bitmod.quantize %w : tensor<16x64xf32> -> !bitmod.qweight<8x64, int8, 32>
  func.return
}

// -----

// An archive entry has a name.
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{bitmod.quantize 'into' needs a non-empty archive name}}
  %q = bitmod.quantize %w into "" : tensor<8x64xf32> -> !bitmod.qweight<8x64, int8, 32>
  func.return
}

// -----

// The result is a !bitmod.qweight (result constraint).
func.func @f(%w: tensor<8x64xf32>) {
  // expected-error@+1 {{tensor<8x64xf32> should be of base attribute bitmod.qweight}}
  %q = bitmod.quantize %w : tensor<8x64xf32> -> tensor<8x64xf32>
  func.return
}

// -----

// The input is 2-D or 3-D.
func.func @f(%x: tensor<1x2x4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{operand 'input' must be 2-D or 3-D}}
  %y = bitmod.matmul %x, %w : (tensor<1x2x4x64xf32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<1x2x4x8xf32>
  func.return
}

// -----

// The input is static.
func.func @f(%x: tensor<?x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{operand 'input' must have a static shape}}
  %y = bitmod.matmul %x, %w : (tensor<?x64xf32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<4x8xf32>
  func.return
}

// -----

// The input is float.
func.func @f(%x: tensor<4x64xi32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{operand 'input' must have a float element type}}
  %y = bitmod.matmul %x, %w : (tensor<4x64xi32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<4x8xf32>
  func.return
}

// -----

// A float weight is 2-D.
func.func @f(%x: tensor<4x64xf32>, %w: tensor<2x8x64xf32>) {
  // expected-error@+1 {{operand 'weight' must be 2-D}}
  %y = bitmod.matmul %x, %w : (tensor<4x64xf32>, tensor<2x8x64xf32>) -> tensor<4x8xf32>
  func.return
}

// -----

// The weight is a tensor or a !bitmod.qweight (operand constraint).
func.func @f(%x: tensor<4x64xf32>, %w: i32) {
  // expected-error@+1 {{Unexpected attribute i32}}
  %y = bitmod.matmul %x, %w : (tensor<4x64xf32>, i32) -> tensor<4x8xf32>
  func.return
}

// -----

// Input and weight agree on K.
func.func @f(%x: tensor<4x32xf32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{operand 'weight' !bitmod.qweight<8x64, int8, 32> has K=64 but operand 'input' tensor<4x32xf32> has K=32}}
  %y = bitmod.matmul %x, %w : (tensor<4x32xf32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<4x8xf32>
  func.return
}

// -----

// The bias is 1-D.
func.func @f(%x: tensor<4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>, %b: tensor<1x8xf32>) {
  // expected-error@+1 {{operand 'bias' must be 1-D}}
  %y = bitmod.matmul %x, %w bias %b : (tensor<4x64xf32>, !bitmod.qweight<8x64, int8, 32>, tensor<1x8xf32>) -> tensor<4x8xf32>
  func.return
}

// -----

// The bias has N elements.
func.func @f(%x: tensor<4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>, %b: tensor<7xf32>) {
  // expected-error@+1 {{operand 'bias' tensor<7xf32> must have shape [8] (N of operand 'weight')}}
  %y = bitmod.matmul %x, %w bias %b : (tensor<4x64xf32>, !bitmod.qweight<8x64, int8, 32>, tensor<7xf32>) -> tensor<4x8xf32>
  func.return
}

// -----

// The bias has the input's element type.
func.func @f(%x: tensor<4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>, %b: tensor<8xf16>) {
  // expected-error@+1 {{operand 'bias' tensor<8xf16> must have element type f32 like operand 'input'}}
  %y = bitmod.matmul %x, %w bias %b : (tensor<4x64xf32>, !bitmod.qweight<8x64, int8, 32>, tensor<8xf16>) -> tensor<4x8xf32>
  func.return
}

// -----

// The result is 2-D or 3-D.
func.func @f(%x: tensor<4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{result must be 2-D or 3-D}}
  %y = bitmod.matmul %x, %w : (tensor<4x64xf32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<32xf32>
  func.return
}

// -----

// The result is [rows, N].
func.func @f(%x: tensor<4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{result tensor<4x9xf32> must have shape [4, 8] (operand 'input' rows by N of operand 'weight')}}
  %y = bitmod.matmul %x, %w : (tensor<4x64xf32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<4x9xf32>
  func.return
}

// -----

// The result has the input's element type.
func.func @f(%x: tensor<4x64xf32>, %w: !bitmod.qweight<8x64, int8, 32>) {
  // expected-error@+1 {{result tensor<4x8xf16> must have element type f32 like operand 'input'}}
  %y = bitmod.matmul %x, %w : (tensor<4x64xf32>, !bitmod.qweight<8x64, int8, 32>) -> tensor<4x8xf16>
  func.return
}

// -----

// A run-time quantization names the memory-image tensor it fills.
func.func @f(%bt: tensor<2x3x4xf32>) {
  // expected-error@+1 {{a 'runtime' bitmod.quantize needs 'into'}}
  %q = bitmod.quantize %bt runtime : tensor<2x3x4xf32> -> !bitmod.qweight<2x3x4, int8, 4>
  func.return
}

// -----

// Only a run-time quantization has one matrix per batch slice (the archive holds [N, K]).
func.func @f(%bt: tensor<2x3x4xf32>) {
  // expected-error@+1 {{operand 'weight' must be 2-D, got tensor<2x3x4xf32>}}
  %q = bitmod.quantize %bt into "w" : tensor<2x3x4xf32> -> !bitmod.qweight<2x3x4, int8, 4>
  func.return
}

// -----

// A weight per batch slice needs a [B, M, K] input of the same B.
func.func @f(%a: tensor<3x5x4xf32>, %q: !bitmod.qweight<2x3x4, int8, 4>) {
  // expected-error@+1 {{operand 'weight' !bitmod.qweight<2x3x4, int8, 4> holds one matrix per batch slice but operand 'input' tensor<3x5x4xf32> is not a [2, M, K] batch}}
  %y = bitmod.matmul %a, %q : (tensor<3x5x4xf32>, !bitmod.qweight<2x3x4, int8, 4>) -> tensor<3x5x3xf32>
  func.return
}

// -----

// ... and takes no bias.
func.func @f(%a: tensor<2x5x4xf32>, %q: !bitmod.qweight<2x3x4, int8, 4>, %b: tensor<3xf32>) {
  // expected-error@+1 {{a matmul with a weight per batch slice takes no bias}}
  %y = bitmod.matmul %a, %q bias %b : (tensor<2x5x4xf32>, !bitmod.qweight<2x3x4, int8, 4>, tensor<3xf32>) -> tensor<2x5x3xf32>
  func.return
}
