//go:build !purego

#include "textflag.h"

// func momentumS(n int, p, grad, vel *float32, lr, mu, scale float32, tiny uint32)
// For i < n (a positive multiple of 16): v = mu·s[i] + scale·g[i], 0
// where its magnitude's bits are at most tiny as an int32 (never for
// tiny = 0xffffffff); s[i] = v; p[i] -= lr·v.
// Products and sums rounded apart (no FMA), as Go rounds them.
TEXT ·momentumS(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ vel+24(FP), DX
	VBROADCASTSS lr+32(FP), Y0
	VBROADCASTSS mu+36(FP), Y1
	VBROADCASTSS scale+40(FP), Y2
	MOVL tiny+44(FP), AX
	VMOVD AX, X3
	VPBROADCASTD X3, Y3
	MOVL $0x7fffffff, AX
	VMOVD AX, X4
	VPBROADCASTD X4, Y4
loop:
	VMULPS (DX), Y1, Y5
	VMULPS 32(DX), Y1, Y6
	VMULPS (SI), Y2, Y7
	VMULPS 32(SI), Y2, Y8
	VADDPS Y7, Y5, Y5
	VADDPS Y8, Y6, Y6
	VPAND Y4, Y5, Y7
	VPAND Y4, Y6, Y8
	VPCMPGTD Y3, Y7, Y7
	VPCMPGTD Y3, Y8, Y8
	VPAND Y7, Y5, Y5
	VPAND Y8, Y6, Y6
	VMOVUPS Y5, (DX)
	VMOVUPS Y6, 32(DX)
	VMULPS Y5, Y0, Y5
	VMULPS Y6, Y0, Y6
	VMOVUPS (DI), Y7
	VMOVUPS 32(DI), Y8
	VSUBPS Y5, Y7, Y7
	VSUBPS Y6, Y8, Y8
	VMOVUPS Y7, (DI)
	VMOVUPS Y8, 32(DI)
	ADDQ $64, DI
	ADDQ $64, SI
	ADDQ $64, DX
	SUBQ $16, CX
	JNZ loop
	VZEROUPPER
	RET

// func momentumWDS(n int, p, grad, vel *float32, lr, mu, scale, wd float32)
// For i < n (a positive multiple of 16): v = mu·s[i] + (scale·g[i] +
// wd·p[i]); s[i] = v; p[i] -= lr·v. Products and sums rounded apart (no
// FMA), as Go rounds them.
TEXT ·momentumWDS(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ vel+24(FP), DX
	VBROADCASTSS lr+32(FP), Y0
	VBROADCASTSS mu+36(FP), Y1
	VBROADCASTSS scale+40(FP), Y2
	VBROADCASTSS wd+44(FP), Y3
loopWD:
	VMOVUPS (DI), Y4        // p
	VMOVUPS 32(DI), Y5
	VMULPS (SI), Y2, Y6     // g·scale
	VMULPS 32(SI), Y2, Y7
	VMULPS Y4, Y3, Y8       // wd·p
	VMULPS Y5, Y3, Y9
	VADDPS Y8, Y6, Y6       // gi
	VADDPS Y9, Y7, Y7
	VMULPS (DX), Y1, Y8     // mu·s
	VMULPS 32(DX), Y1, Y9
	VADDPS Y6, Y8, Y8       // v = mu·s + gi
	VADDPS Y7, Y9, Y9
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, 32(DX)
	VMULPS Y8, Y0, Y8       // lr·v
	VMULPS Y9, Y0, Y9
	VSUBPS Y8, Y4, Y4       // p − lr·v
	VSUBPS Y9, Y5, Y5
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ $64, DI
	ADDQ $64, SI
	ADDQ $64, DX
	SUBQ $16, CX
	JNZ loopWD
	VZEROUPPER
	RET

// func nesterovS(n int, p, grad, vel *float32, lr, mu, scale float32)
// For i < n (a positive multiple of 8): gi = scale·g[i]; v = mu·s[i] +
// gi; s[i] = v; p[i] -= lr·(gi + mu·v). Products and sums rounded apart
// (no FMA), as Go rounds them.
TEXT ·nesterovS(SB), NOSPLIT, $0-44
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ vel+24(FP), DX
	VBROADCASTSS lr+32(FP), Y0
	VBROADCASTSS mu+36(FP), Y1
	VBROADCASTSS scale+40(FP), Y2
loopN:
	VMULPS (SI), Y2, Y4     // gi = g·scale
	VMULPS (DX), Y1, Y5     // mu·s
	VADDPS Y4, Y5, Y5       // v = mu·s + gi
	VMOVUPS Y5, (DX)
	VMULPS Y5, Y1, Y6       // mu·v
	VADDPS Y6, Y4, Y6       // gi + mu·v
	VMULPS Y6, Y0, Y6       // lr·(gi + mu·v)
	VMOVUPS (DI), Y7
	VSUBPS Y6, Y7, Y7       // p − …
	VMOVUPS Y7, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	SUBQ $8, CX
	JNZ loopN
	VZEROUPPER
	RET
