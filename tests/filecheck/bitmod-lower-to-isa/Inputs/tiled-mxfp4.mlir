// An MX weight tiled by hand (bitmod-tile refuses to): lowering refuses it too.
func.func @f(%x: tensor<8x64xf32>) -> tensor<8x32xf32> {
  %w = bitmod.param "fc.weight" : tensor<32x64xf32>
  %q = bitmod.quantize %w into "fc.weight" : tensor<32x64xf32> -> !bitmod.qweight<32x64, mxfp4, 32>
  %y = bsisa.tiled_matmul %x, %q tiling #bsisa.tiling<rows = 8, cols = 8, tiles = 16, block_rows = 8, kc = 64, act_kc = 64, m_blocks = 1, n_blocks = 1, k_chunks = 1, act_block_bytes = 1024, weight_block_bytes = 4608> : (tensor<8x64xf32>, !bitmod.qweight<32x64, mxfp4, 32>) -> tensor<8x32xf32> {
    bsisa.loop L0 count 1 {
      bsisa.ld.wgt @weight col L0 k -
      bsisa.loop L1 count 1 {
        bsisa.acc.clr
        bsisa.ld.act @act row L1 k -
        bsisa.mac
        bsisa.drain
        bsisa.st.out @out row L1 col L0
      }
    }
  }
  func.return %y : tensor<8x32xf32>
}
