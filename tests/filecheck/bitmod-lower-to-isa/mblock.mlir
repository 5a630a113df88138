// Blocks of more rows than the array has: the segment sets MR with cfg.mblock after
// cfg.kchunk (cfg.array resets it to the array's rows for the next segment).
// RUN: bitmod-opt %s -p 'bitmod-tile{order=acts-resident block-rows=32 kchunk=512},bitmod-lower-to-isa' --emit=asm | filecheck %s

func.func @up(%x: tensor<40x512xf32>) -> tensor<40x256xf32> {
  %w = bitmod.param "up.weight" : tensor<256x512xf32>
  %q = bitmod.quantize %w into "up.weight" : tensor<256x512xf32> -> !bitmod.qweight<256x512, int8, 128>
  %y = bitmod.matmul %x, %q : (tensor<40x512xf32>, !bitmod.qweight<256x512, int8, 128>) -> tensor<40x256xf32>
  func.return %y : tensor<40x256xf32>
}

// 40 rows in blocks of 32: 2 (the second clipped to 8 rows, one array pass); 256 channels
// in blocks of 128: 2; K = 512 fits one weight block (128 x (512 + 4 + 2) B).
// CHECK:      cfg.array rows=8 cols=8 tiles=16
// CHECK-NEXT: cfg.fmt fmt=int8 sb=8 g=128
// CHECK-NEXT: cfg.kchunk 512
// CHECK-NEXT: cfg.mblock rows=32
// CHECK-NEXT: loop L0 count=2
// CHECK-NEXT:   ld.act d0 row=L0 k=-
// CHECK-NEXT:   loop L1 count=2
// CHECK-NEXT:     acc.clr
// CHECK-NEXT:     ld.wgt d1 col=L1 k=-
// CHECK-NEXT:     mac
// CHECK-NEXT:     drain bias=-
// CHECK-NEXT:     st.out d2 row=L0 col=L1
// CHECK-NEXT:   endloop L1
// CHECK-NEXT: endloop L0
// CHECK-NEXT: halt
