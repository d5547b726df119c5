//go:build !purego

#include "textflag.h"

// func axpbyS(n int, dst, in *float32, a, w float32)
// dst[j] = a·in[j] + w·dst[j] for j < n, n a positive multiple of 32;
// the products and the sum rounded apart (no FMA), as Go rounds them.
TEXT ·axpbyS(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ in+16(FP), SI
	VBROADCASTSS a+24(FP), Y0
	VBROADCASTSS w+28(FP), Y1
loopS:
	VMULPS (SI), Y0, Y2
	VMULPS 32(SI), Y0, Y3
	VMULPS 64(SI), Y0, Y4
	VMULPS 96(SI), Y0, Y5
	VMULPS (DI), Y1, Y6
	VMULPS 32(DI), Y1, Y7
	VMULPS 64(DI), Y1, Y8
	VMULPS 96(DI), Y1, Y9
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	VADDPS Y8, Y4, Y4
	VADDPS Y9, Y5, Y5
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	VMOVUPS Y4, 64(DI)
	VMOVUPS Y5, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JNZ loopS
	VZEROUPPER
	RET

// func axpbyD(n int, dst, in *float64, a, w float64)
// axpbyS for float64, n a positive multiple of 16.
TEXT ·axpbyD(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ in+16(FP), SI
	VBROADCASTSD a+24(FP), Y0
	VBROADCASTSD w+32(FP), Y1
loopD:
	VMULPD (SI), Y0, Y2
	VMULPD 32(SI), Y0, Y3
	VMULPD 64(SI), Y0, Y4
	VMULPD 96(SI), Y0, Y5
	VMULPD (DI), Y1, Y6
	VMULPD 32(DI), Y1, Y7
	VMULPD 64(DI), Y1, Y8
	VMULPD 96(DI), Y1, Y9
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	VADDPD Y8, Y4, Y4
	VADDPD Y9, Y5, Y5
	VMOVUPD Y2, (DI)
	VMOVUPD Y3, 32(DI)
	VMOVUPD Y4, 64(DI)
	VMOVUPD Y5, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $16, CX
	JNZ loopD
	VZEROUPPER
	RET
