//go:build !purego

#include "textflag.h"

// func adamS(n int, p, grad, m, v *float32, k *adamK)
// Adam32's loop for i < n, n a positive multiple of 8; k holds scale,
// decay, b1, 1−b1, b2, 1−b2, c1, c2, lr, eps. Every operation rounded
// apart (no FMA), as Go rounds them.
TEXT ·adamS(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ m+24(FP), R9
	MOVQ v+32(FP), R10
	MOVQ k+40(FP), R8
	VBROADCASTSS 0(R8), Y0  // scale
	VBROADCASTSS 4(R8), Y1  // decay
	VBROADCASTSS 8(R8), Y2  // b1
	VBROADCASTSS 12(R8), Y3 // 1−b1
	VBROADCASTSS 16(R8), Y4 // b2
	VBROADCASTSS 20(R8), Y5 // 1−b2
	VBROADCASTSS 24(R8), Y6 // c1
	VBROADCASTSS 28(R8), Y7 // c2
	VBROADCASTSS 32(R8), Y8 // lr
	VBROADCASTSS 36(R8), Y9 // eps
loop:
	VMULPS (SI), Y0, Y10    // gi = g·scale
	VMULPS (DI), Y1, Y11    // p·decay
	VMULPS (R9), Y2, Y12    // b1·m
	VMULPS Y10, Y3, Y13     // (1−b1)·gi
	VADDPS Y13, Y12, Y12    // m
	VMOVUPS Y12, (R9)
	VMULPS (R10), Y4, Y13   // b2·v
	VMULPS Y10, Y5, Y14     // (1−b2)·gi
	VMULPS Y10, Y14, Y14    // ·gi
	VADDPS Y14, Y13, Y13    // v
	VMOVUPS Y13, (R10)
	VDIVPS Y6, Y12, Y12     // mh = m/c1
	VDIVPS Y7, Y13, Y13     // vh = v/c2
	VSQRTPS Y13, Y13        // √vh
	VADDPS Y9, Y13, Y13     // + eps
	VMULPS Y12, Y8, Y12     // lr·mh
	VDIVPS Y13, Y12, Y12    // lr·mh / (√vh + eps)
	VSUBPS Y12, Y11, Y11    // p·decay − …
	VMOVUPS Y11, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R9
	ADDQ $32, R10
	SUBQ $8, CX
	JNZ loop
	VZEROUPPER
	RET
