package cuda

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// minDriver is the oldest driver API version (CUDA 11.8) that JIT-compiles
// the committed PTX (ISA 7.8).
const minDriver = 11080

// Device attributes read by Probe (CUdevice_attribute).
const (
	attrClockRate       = 13
	attrMultiprocessors = 16
	attrMajor           = 75
	attrMinor           = 76
)

// cuBLAS library names tried in order, then the same names in the
// directories where NVIDIA's Python wheels put them.
var cublasNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}

var cublasGlobs = []string{
	"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
	"/usr/local/lib/python3*/site-packages/nvidia/cublas/lib",
	"/usr/lib/python3/dist-packages/nvidia/cublas/lib",
	"/opt/conda/lib/python3*/site-packages/nvidia/cublas/lib",
	"/usr/local/cuda/lib64",
}

// api holds the driver and cuBLAS entry points, loaded once.
type api struct {
	cublasPath string

	cuInit                func(flags uint32) int32
	cuDriverGetVersion    func(v *int32) int32
	cuDeviceGetCount      func(n *int32) int32
	cuDeviceGet           func(d *int32, ordinal int32) int32
	cuDeviceGetName       func(name *byte, n int32, d int32) int32
	cuDeviceTotalMem      func(bytes *uint64, d int32) int32
	cuDeviceGetAttribute  func(v *int32, attr int32, d int32) int32
	cuDevicePrimaryCtxRet func(ctx *uintptr, d int32) int32
	cuDevicePrimaryCtxRel func(d int32) int32
	cuCtxSetCurrent       func(ctx uintptr) int32
	cuCtxSynchronize      func() int32
	cuModuleLoadDataEx    func(mod *uintptr, image unsafe.Pointer, n uint32, opts *int32, vals *uintptr) int32
	cuModuleUnload        func(mod uintptr) int32
	cuModuleGetFunction   func(f *uintptr, mod uintptr, name *byte) int32
	cuMemAlloc            func(p *uint64, bytes uint64) int32
	cuMemFree             func(p uint64) int32
	cuMemcpyHtoD          func(dst uint64, src unsafe.Pointer, bytes uint64) int32
	cuMemcpyDtoH          func(dst unsafe.Pointer, src uint64, bytes uint64) int32
	cuLaunchKernel        func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	cuGetErrorName        func(code int32, name **byte) int32
	cublasCreate          func(h *uintptr) int32
	cublasDestroy         func(h uintptr) int32
	cublasGetVersion      func(h uintptr, v *int32) int32
	cublasSgemm           func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) int32
	cublasDgemm           func(h uintptr, ta, tb, m, n, k int32, alpha *float64, a uint64, lda int32, b uint64, ldb int32, beta *float64, c uint64, ldc int32) int32
}

var (
	loadOnce sync.Once
	loaded   *api
	loadErr  error
)

// load opens libcuda and cuBLAS and resolves the entry points.
func load() (*api, error) {
	loadOnce.Do(func() { loaded, loadErr = loadAPI() })
	return loaded, loadErr
}

func bind(lib uintptr, fptr any, names ...string) error {
	for _, n := range names {
		if sym, err := purego.Dlsym(lib, n); err == nil && sym != 0 {
			purego.RegisterFunc(fptr, sym)
			return nil
		}
	}
	return fmt.Errorf("symbol %s not found", names[0])
}

func loadAPI() (*api, error) {
	if runtime.GOOS != "linux" {
		return nil, &ProbeError{Err: ErrNoDriver, Detail: "the CUDA executor runs on Linux only, this is " + runtime.GOOS}
	}
	cu, err := purego.Dlopen("libcuda.so.1", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, &ProbeError{Err: ErrNoDriver, Detail: fmt.Sprintf("cannot load libcuda.so.1 (is the NVIDIA driver installed?): %v", err)}
	}
	a := &api{}
	for _, b := range []struct {
		f     any
		names []string
	}{
		{&a.cuInit, []string{"cuInit"}},
		{&a.cuDriverGetVersion, []string{"cuDriverGetVersion"}},
		{&a.cuDeviceGetCount, []string{"cuDeviceGetCount"}},
		{&a.cuDeviceGet, []string{"cuDeviceGet"}},
		{&a.cuDeviceGetName, []string{"cuDeviceGetName"}},
		{&a.cuDeviceTotalMem, []string{"cuDeviceTotalMem_v2"}},
		{&a.cuDeviceGetAttribute, []string{"cuDeviceGetAttribute"}},
		{&a.cuDevicePrimaryCtxRet, []string{"cuDevicePrimaryCtxRetain"}},
		{&a.cuDevicePrimaryCtxRel, []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}},
		{&a.cuCtxSetCurrent, []string{"cuCtxSetCurrent"}},
		{&a.cuCtxSynchronize, []string{"cuCtxSynchronize"}},
		{&a.cuModuleLoadDataEx, []string{"cuModuleLoadDataEx"}},
		{&a.cuModuleUnload, []string{"cuModuleUnload"}},
		{&a.cuModuleGetFunction, []string{"cuModuleGetFunction"}},
		{&a.cuMemAlloc, []string{"cuMemAlloc_v2"}},
		{&a.cuMemFree, []string{"cuMemFree_v2"}},
		{&a.cuMemcpyHtoD, []string{"cuMemcpyHtoD_v2"}},
		{&a.cuMemcpyDtoH, []string{"cuMemcpyDtoH_v2"}},
		{&a.cuLaunchKernel, []string{"cuLaunchKernel"}},
		{&a.cuGetErrorName, []string{"cuGetErrorName"}},
	} {
		if err := bind(cu, b.f, b.names...); err != nil {
			return nil, &ProbeError{Err: ErrDriverTooOld, Detail: fmt.Sprintf("libcuda.so.1: %v", err)}
		}
	}
	var lib uintptr
	var tried []string
	try := func(path string) bool {
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			tried = append(tried, path)
			return false
		}
		lib, a.cublasPath = h, path
		return true
	}
	found := false
	for _, n := range cublasNames {
		if found = try(n); found {
			break
		}
	}
	for _, g := range cublasGlobs {
		if found {
			break
		}
		dirs, _ := filepath.Glob(g)
		for _, d := range dirs {
			for _, n := range cublasNames {
				if found = try(filepath.Join(d, n)); found {
					break
				}
			}
			if found {
				break
			}
		}
	}
	if !found {
		return nil, &ProbeError{Err: ErrNoCUBLAS, Detail: "tried " + strings.Join(tried, ", ") + " (add cuBLAS's directory to LD_LIBRARY_PATH)"}
	}
	for _, b := range []struct {
		f     any
		names []string
	}{
		{&a.cublasCreate, []string{"cublasCreate_v2"}},
		{&a.cublasDestroy, []string{"cublasDestroy_v2"}},
		{&a.cublasGetVersion, []string{"cublasGetVersion_v2"}},
		{&a.cublasSgemm, []string{"cublasSgemm_v2"}},
		{&a.cublasDgemm, []string{"cublasDgemm_v2"}},
	} {
		if err := bind(lib, b.f, b.names...); err != nil {
			return nil, &ProbeError{Err: ErrNoCUBLAS, Detail: fmt.Sprintf("%s: %v", a.cublasPath, err)}
		}
	}
	return a, nil
}

// check turns a CUresult into an error.
func (a *api) check(call string, code int32) error {
	if code == 0 {
		return nil
	}
	e := &CallError{Call: call, Code: int(code)}
	var p *byte
	if a.cuGetErrorName != nil && a.cuGetErrorName(code, &p) == 0 && p != nil {
		e.Name = cString(p)
	}
	return e
}

// checkBLAS turns a cublasStatus_t into an error.
func checkBLAS(call string, code int32) error {
	if code == 0 {
		return nil
	}
	names := map[int32]string{1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
		8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
		14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED"}
	return &CallError{Call: call, Code: int(code), Name: names[code]}
}

func cString(p *byte) string {
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// Info describes a GPU.
type Info struct {
	Ordinal       int
	Name          string
	Major, Minor  int    // compute capability
	Memory        uint64 // bytes
	Multiprocs    int
	ClockKHz      int // 0 when the driver no longer reports it
	Driver        int // driver API version, 1000·major + 10·minor
	CUBLAS        string
	CUBLASVersion int
}

func (i Info) String() string {
	return fmt.Sprintf("%s (GPU %d, compute %d.%d, %.1f GiB, %d SMs, driver %d.%d, %s)",
		i.Name, i.Ordinal, i.Major, i.Minor, float64(i.Memory)/(1<<30), i.Multiprocs, i.Driver/1000, i.Driver%1000/10, filepath.Base(i.CUBLAS))
}

// PeakFP32 is the card's float32 peak in FLOP/s (two per fused
// multiply-add per CUDA core per clock), or 0 when unknown.
func (i Info) PeakFP32() float64 {
	cores := 0
	switch {
	case i.Major == 5 || (i.Major == 6 && i.Minor > 0):
		cores = 128
	case i.Major == 6 || i.Major == 7 || (i.Major == 8 && i.Minor == 0):
		cores = 64
	case i.Major >= 8:
		cores = 128
	}
	return 2 * float64(cores) * float64(i.Multiprocs) * float64(i.ClockKHz) * 1e3
}

// Probe finds GPU 0 and describes it, or says why the CUDA executor cannot
// run here: an error matching ErrNoDriver, ErrNoDevice, ErrDriverTooOld or
// ErrNoCUBLAS.
func Probe() (Info, error) { return probe(0) }

func probe(ordinal int) (Info, error) {
	a, err := load()
	if err != nil {
		return Info{}, err
	}
	info := Info{Ordinal: ordinal, CUBLAS: a.cublasPath}
	if code := a.cuInit(0); code != 0 {
		err := a.check("cuInit", code)
		switch code {
		case 100: // CUDA_ERROR_NO_DEVICE
			return info, &ProbeError{Err: ErrNoDevice, Detail: err.Error()}
		case 35: // CUDA_ERROR_INSUFFICIENT_DRIVER
			return info, &ProbeError{Err: ErrDriverTooOld, Detail: err.Error()}
		}
		return info, &ProbeError{Err: ErrNoDriver, Detail: err.Error()}
	}
	var v int32
	if err := a.check("cuDriverGetVersion", a.cuDriverGetVersion(&v)); err != nil {
		return info, &ProbeError{Err: ErrNoDriver, Detail: err.Error()}
	}
	info.Driver = int(v)
	if v < minDriver {
		return info, &ProbeError{Err: ErrDriverTooOld, Detail: fmt.Sprintf("driver API %d.%d, the kernels need %d.%d", v/1000, v%1000/10, minDriver/1000, minDriver%1000/10)}
	}
	var n int32
	if err := a.check("cuDeviceGetCount", a.cuDeviceGetCount(&n)); err != nil || n == 0 {
		detail := "the driver sees no GPU"
		if err != nil {
			detail = err.Error()
		}
		return info, &ProbeError{Err: ErrNoDevice, Detail: detail}
	}
	if ordinal < 0 || ordinal >= int(n) {
		return info, &ProbeError{Err: ErrNoDevice, Detail: fmt.Sprintf("GPU %d asked for, the driver sees %d", ordinal, n)}
	}
	var d int32
	if err := a.check("cuDeviceGet", a.cuDeviceGet(&d, int32(ordinal))); err != nil {
		return info, &ProbeError{Err: ErrNoDevice, Detail: err.Error()}
	}
	name := make([]byte, 256)
	if err := a.check("cuDeviceGetName", a.cuDeviceGetName(&name[0], int32(len(name)), d)); err == nil {
		info.Name = strings.TrimRight(string(name), "\x00")
	}
	var mem uint64
	if a.cuDeviceTotalMem(&mem, d) == 0 {
		info.Memory = mem
	}
	attr := func(k int32) int {
		var v int32
		if a.cuDeviceGetAttribute(&v, k, d) != 0 {
			return 0
		}
		return int(v)
	}
	info.Major, info.Minor = attr(attrMajor), attr(attrMinor)
	info.Multiprocs, info.ClockKHz = attr(attrMultiprocessors), attr(attrClockRate)
	return info, nil
}

// gpu is the device behind the CUDA executor: the primary context of one
// GPU, the kernels loaded from the embedded PTX, a cuBLAS handle. Calls
// are serialised, each on a thread with the context current.
type gpu struct {
	mu     sync.Mutex
	a      *api
	info   Info
	dev    int32
	ctx    uintptr
	mods   []uintptr
	funcs  map[string]uintptr
	blas   uintptr
	closed bool
}

func newGPU(ordinal int) (*gpu, error) {
	info, err := probe(ordinal)
	if err != nil {
		return nil, err
	}
	a, _ := load()
	g := &gpu{a: a, info: info, funcs: map[string]uintptr{}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := a.check("cuDeviceGet", a.cuDeviceGet(&g.dev, int32(ordinal))); err != nil {
		return nil, err
	}
	if err := a.check("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRet(&g.ctx, g.dev)); err != nil {
		return nil, err
	}
	if err := a.check("cuCtxSetCurrent", a.cuCtxSetCurrent(g.ctx)); err != nil {
		a.cuDevicePrimaryCtxRel(g.dev)
		return nil, err
	}
	names, mods, err := ptxModules()
	if err != nil {
		a.cuDevicePrimaryCtxRel(g.dev)
		return nil, err
	}
	for _, n := range names {
		img := append(append([]byte{}, mods[n]...), 0)
		var m uintptr
		// The JIT writes what went wrong into jitLog.
		jitLog := make([]byte, 16<<10)
		opts := []int32{5, 6} // CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
		vals := []uintptr{uintptr(unsafe.Pointer(&jitLog[0])), uintptr(len(jitLog))}
		code := a.cuModuleLoadDataEx(&m, unsafe.Pointer(&img[0]), uint32(len(opts)), &opts[0], &vals[0])
		runtime.KeepAlive(jitLog)
		if err := a.check("cuModuleLoadDataEx", code); err != nil {
			g.closeLocked()
			msg := strings.TrimRight(string(jitLog), "\x00")
			return nil, fmt.Errorf("loading %s: %w: %s", n, err, msg)
		}
		g.mods = append(g.mods, m)
	}
	for _, k := range plan.KernelNames() {
		for _, sfx := range []string{"_f32", "_f64"} {
			name := append([]byte(k+sfx), 0)
			var f uintptr
			found := false
			for _, m := range g.mods {
				if a.cuModuleGetFunction(&f, m, &name[0]) == 0 {
					found = true
					break
				}
			}
			if !found {
				g.closeLocked()
				return nil, fmt.Errorf("%w: kernel %s%s is in no PTX module", ErrCUDA, k, sfx)
			}
			g.funcs[k+sfx] = f
		}
	}
	if err := checkBLAS("cublasCreate_v2", a.cublasCreate(&g.blas)); err != nil {
		g.closeLocked()
		return nil, err
	}
	var bv int32
	if a.cublasGetVersion(g.blas, &bv) == 0 {
		g.info.CUBLASVersion = int(bv)
	}
	return g, nil
}

// enter locks the device and makes its context current on this thread.
func (g *gpu) enter() (func(), error) {
	g.mu.Lock()
	runtime.LockOSThread()
	leave := func() {
		runtime.UnlockOSThread()
		g.mu.Unlock()
	}
	if g.closed {
		leave()
		return nil, fmt.Errorf("%w: device closed", ErrCUDA)
	}
	if err := g.a.check("cuCtxSetCurrent", g.a.cuCtxSetCurrent(g.ctx)); err != nil {
		leave()
		return nil, err
	}
	return leave, nil
}

func (g *gpu) Alloc(bytes int64) (uint64, error) {
	leave, err := g.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	var p uint64
	return p, g.a.check("cuMemAlloc_v2", g.a.cuMemAlloc(&p, uint64(max(bytes, 1))))
}

func (g *gpu) Free(p uint64) error {
	leave, err := g.enter()
	if err != nil {
		return err
	}
	defer leave()
	return g.a.check("cuMemFree_v2", g.a.cuMemFree(p))
}

func (g *gpu) Upload(dst uint64, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	leave, err := g.enter()
	if err != nil {
		return err
	}
	defer leave()
	return g.a.check("cuMemcpyHtoD_v2", g.a.cuMemcpyHtoD(dst, unsafe.Pointer(&src[0]), uint64(len(src))))
}

func (g *gpu) Download(dst []byte, src uint64) error {
	if len(dst) == 0 {
		return nil
	}
	leave, err := g.enter()
	if err != nil {
		return err
	}
	defer leave()
	return g.a.check("cuMemcpyDtoH_v2", g.a.cuMemcpyDtoH(unsafe.Pointer(&dst[0]), src, uint64(len(dst))))
}

// run launches the plan's steps on the default stream and waits for them.
func (g *gpu) Run(dt graph.DType, ls []plan.Launch, bufs []uint64) error {
	leave, err := g.enter()
	if err != nil {
		return err
	}
	defer leave()
	for i := range ls {
		if err := g.launch(dt, &ls[i], bufs); err != nil {
			return fmt.Errorf("launch %d (%s, node %d): %w", i, ls[i].Kernel, ls[i].Node, err)
		}
	}
	return g.a.check("cuCtxSynchronize", g.a.cuCtxSynchronize())
}

func (g *gpu) launch(dt graph.DType, l *plan.Launch, bufs []uint64) error {
	if gm := l.Gemm; gm != nil {
		op := func(t bool) int32 {
			if t {
				return 1 // CUBLAS_OP_T
			}
			return 0
		}
		a, b, c := bufs[gm.A], bufs[gm.B], bufs[gm.C]
		if dt == graph.Float64 {
			alpha, beta := gm.Alpha, gm.Beta
			return checkBLAS("cublasDgemm_v2", g.a.cublasDgemm(g.blas, op(gm.TransA), op(gm.TransB), int32(gm.M), int32(gm.N), int32(gm.K),
				&alpha, a, int32(gm.Lda), b, int32(gm.Ldb), &beta, c, int32(gm.Ldc)))
		}
		alpha, beta := float32(gm.Alpha), float32(gm.Beta)
		return checkBLAS("cublasSgemm_v2", g.a.cublasSgemm(g.blas, op(gm.TransA), op(gm.TransB), int32(gm.M), int32(gm.N), int32(gm.K),
			&alpha, a, int32(gm.Lda), b, int32(gm.Ldb), &beta, c, int32(gm.Ldc)))
	}
	f, ok := g.funcs[l.Kernel]
	if !ok {
		return fmt.Errorf("%w: no kernel %q", ErrCUDA, l.Kernel)
	}
	// Argument values live in one Go slice that the GC does not move; the
	// driver gets an array of their addresses, held as integers.
	vals, err := packArgs(dt, l.Args, bufs)
	if err != nil {
		return err
	}
	addrs := make([]uintptr, len(vals))
	for i := range vals {
		addrs[i] = uintptr(unsafe.Pointer(&vals[i]))
	}
	var params unsafe.Pointer
	if len(addrs) > 0 {
		params = unsafe.Pointer(&addrs[0])
	}
	code := g.a.cuLaunchKernel(f, uint32(l.Grid.X), uint32(max(l.Grid.Y, 1)), uint32(max(l.Grid.Z, 1)),
		uint32(l.Block.X), uint32(max(l.Block.Y, 1)), uint32(max(l.Block.Z, 1)), 0, 0, params, nil)
	runtime.KeepAlive(vals)
	runtime.KeepAlive(addrs)
	return g.a.check("cuLaunchKernel", code)
}

// packArgs lays out kernel arguments as cuLaunchKernel reads them: each
// in its own 8-byte slot, in its C type's representation (a device
// pointer plus the element offset, a 32-bit int, a float or a double).
func packArgs(dt graph.DType, args []plan.Arg, bufs []uint64) ([]uint64, error) {
	vals := make([]uint64, len(args))
	for i, a := range args {
		switch a.Type {
		case plan.ArgPtr:
			if a.Buf < 0 || a.Buf >= len(bufs) || a.Off < 0 {
				return nil, fmt.Errorf("%w: argument %d: buffer %d+%d of %d", ErrCUDA, i, a.Buf, a.Off, len(bufs))
			}
			vals[i] = bufs[a.Buf] + uint64(a.Off*dt.Size())
		case plan.ArgInt:
			if a.Int > math.MaxInt32 || a.Int < math.MinInt32 {
				return nil, fmt.Errorf("%w: argument %d = %d overflows a C int", ErrCUDA, i, a.Int)
			}
			vals[i] = uint64(uint32(int32(a.Int)))
		case plan.ArgScalar:
			if dt == graph.Float64 {
				vals[i] = math.Float64bits(a.Scalar)
			} else {
				vals[i] = uint64(math.Float32bits(float32(a.Scalar)))
			}
		default:
			return nil, fmt.Errorf("%w: argument %d has no type", ErrCUDA, i)
		}
	}
	return vals, nil
}

func (g *gpu) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g.a.cuCtxSetCurrent(g.ctx)
	return g.closeLocked()
}

func (g *gpu) closeLocked() error {
	var errs []error
	if g.blas != 0 {
		errs = append(errs, checkBLAS("cublasDestroy_v2", g.a.cublasDestroy(g.blas)))
		g.blas = 0
	}
	for _, m := range g.mods {
		errs = append(errs, g.a.check("cuModuleUnload", g.a.cuModuleUnload(m)))
	}
	g.mods = nil
	errs = append(errs, g.a.check("cuDevicePrimaryCtxRelease", g.a.cuDevicePrimaryCtxRel(g.dev)))
	g.closed = true
	return errors.Join(errs...)
}

// New returns the executor that runs parts on GPU 0 (see WithDevice). It
// fails, with an error matching ErrNoDriver, ErrNoDevice,
// ErrDriverTooOld, ErrNoCUBLAS or ErrCUDA, when there is no usable GPU; it
// never falls back to the CPU by itself.
func New(opts ...Option) (exec.Executor, error) {
	cfg := newConfig(opts)
	g, err := newGPU(cfg.ordinal)
	if err != nil {
		return nil, err
	}
	return &Executor{Executor: plan.Executor{Dev: g, MaxMicroBatches: cfg.maxMicroBatches}, gpu: g}, nil
}

// Executor is the executor New returns: sessions on one GPU, running
// the plans that plan.Lower makes.
type Executor struct {
	plan.Executor
	gpu *gpu
}

// Info describes the executor's GPU.
func (e *Executor) Info() Info { return e.gpu.info }

// Close releases the GPU: its kernels, its cuBLAS handle and the hold on
// its context. Sessions still open fail afterwards.
func (e *Executor) Close() error { return e.gpu.Close() }
