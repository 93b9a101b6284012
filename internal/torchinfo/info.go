// Package torchinfo reports what repro runs on: the libtorch it was prepared
// for, the devices it can use, its threads and the BLAS actually loaded.
package torchinfo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/dist"
)

// Manifest is what scripts/install_libtorch.sh recorded when it prepared
// gotch, compiled into the binary.
type Manifest struct {
	Gotch    string   `json:"gotch"`
	Device   string   `json:"device"`
	Patches  []string `json:"patches"`
	Libtorch struct {
		Root          string `json:"root"`
		Version       string `json:"version"`
		VersionSource string `json:"version_source"`
		LibDir        string `json:"lib_dir"`
		CXX11ABI      int    `json:"cxx11_abi"`
	} `json:"libtorch"`
	Stubbed []string `json:"stubbed_ops"`
}

// Info is the report of `repro info`.
type Info struct {
	Go             string   `json:"go"`
	Manifest       Manifest `json:"prepared"`
	CUDAAvailable  bool     `json:"cuda_available"`
	CUDADevices    int      `json:"cuda_devices"`
	CuDNN          bool     `json:"cudnn"`
	GPUs           []string `json:"gpus"`
	GPUNote        string   `json:"gpu_note,omitempty"`
	Threads        int      `json:"threads"`
	InteropThreads int      `json:"interop_threads"`
	BLAS           string   `json:"blas"`
	BLASPath       string   `json:"blas_path,omitempty"`
	Check          string   `json:"check"`
	// Distributed is what package dist's c10d build has: "gloo", "nccl",
	// and why the others are missing.
	Distributed []string `json:"distributed"`
}

// HasOp says whether the prepared gotch has op (an atg_* wrapper) working,
// not stubbed for this libtorch.
func (m Manifest) HasOp(op string) bool {
	for _, s := range m.Stubbed {
		if s == op {
			return false
		}
	}
	return true
}

// ReadManifest decodes the manifest compiled into the binary.
func ReadManifest() (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal([]byte(libtch.ReproManifest), &m); err != nil {
		return m, fmt.Errorf("gotch's preparation manifest is unreadable (re-run scripts/install_libtorch.sh): %w", err)
	}
	return m, nil
}

// Collect gathers the report. The tensor check runs a tiny computation on
// each usable device, so a broken install shows here rather than mid-training.
func Collect() (*Info, error) {
	m, err := ReadManifest()
	if err != nil {
		return nil, err
	}
	info := &Info{Go: runtime.Version(), Manifest: m}
	gloo, nccl, missing := dist.Backends()
	for _, b := range []struct {
		name string
		has  bool
	}{{"gloo", gloo}, {"nccl", nccl}} {
		if b.has {
			info.Distributed = append(info.Distributed, b.name)
		} else if why := missing[b.name]; why != "" {
			info.Distributed = append(info.Distributed, "no "+b.name+": "+why)
		}
	}
	if why := missing["c10d"]; why != "" {
		info.Distributed = append(info.Distributed, "no c10d: "+why)
	}
	cu := gotch.CUDA // not gotch.NewCuda(), which exits the process when there is no GPU
	info.CUDAAvailable = cu.IsAvailable()
	if info.CUDAAvailable {
		info.CUDADevices = int(cu.DeviceCount())
		info.CuDNN = cu.CudnnIsAvailable()
	}
	info.GPUs, info.GPUNote = gpuNames()
	info.Threads, info.InteropThreads = threads()
	info.BLASPath, info.BLAS = loadedBLAS("/proc/self/maps")

	devices := []gotch.Device{gotch.CPU}
	if info.CUDAAvailable {
		devices = append(devices, gotch.CudaBuilder(0))
	}
	var checks []string
	for _, d := range devices {
		got, err := tinyCheck(d)
		if err != nil {
			return info, fmt.Errorf("tensor check on %v failed: %w", d, err)
		}
		checks = append(checks, got)
	}
	info.Check = strings.Join(checks, "; ")
	return info, nil
}

// tinyCheck computes sum(A·B) for A = ones(2,3), B = arange(6) as 3x2, whose
// exact value is 2*(0+1+...+5) = 30.
func tinyCheck(d gotch.Device) (string, error) {
	a, err := ts.Ones([]int64{2, 3}, gotch.Float, d)
	if err != nil {
		return "", err
	}
	defer a.MustDrop()
	r, err := ts.Arange(ts.IntScalar(6), gotch.Float, d)
	if err != nil {
		return "", err
	}
	defer r.MustDrop()
	b, err := r.View([]int64{3, 2}, false)
	if err != nil {
		return "", err
	}
	defer b.MustDrop()
	p, err := a.Matmul(b, false)
	if err != nil {
		return "", err
	}
	defer p.MustDrop()
	s, err := p.Sum(gotch.Float, false)
	if err != nil {
		return "", err
	}
	defer s.MustDrop()
	v := s.Float64Values()[0]
	if v != 30 {
		return "", fmt.Errorf("sum(ones(2,3) @ arange(6).view(3,2)) = %v, want 30", v)
	}
	return fmt.Sprintf("sum(ones(2,3) @ arange(6).view(3,2)) = 30 on %s", deviceName(d)), nil
}

func deviceName(d gotch.Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// loadedBLAS finds the BLAS library mapped into this process. Debian picks
// libblas.so.3 through alternatives, so the mapped file, not the build
// configuration, tells whether the slow reference BLAS is in use.
func loadedBLAS(maps string) (path, kind string) {
	f, err := os.Open(maps)
	if err != nil {
		return "", "unknown (cannot read " + maps + ")"
	}
	defer f.Close()
	return parseBLAS(f)
}

func parseBLAS(r io.Reader) (path, kind string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		base := filepath.Base(p)
		switch {
		case strings.Contains(base, "openblas") || strings.Contains(p, "/openblas"):
			return p, "openblas"
		case strings.Contains(base, "mkl_rt") || strings.Contains(base, "libmkl"):
			return p, "mkl"
		case strings.Contains(base, "blis"):
			return p, "blis"
		case strings.Contains(p, "atlas"):
			return p, "atlas"
		case strings.HasPrefix(base, "libblas.so"):
			return p, "reference BLAS (slow: install libopenblas0-pthread)"
		}
	}
	return "", "no separate BLAS library loaded (libtorch may link MKL statically)"
}

// Print writes the report for people.
func (info *Info) Print(w io.Writer) {
	m := info.Manifest
	fmt.Fprintf(w, "libtorch  %s (%s build, version from %s, C++11 ABI %d)\n", m.Libtorch.Version, m.Device, m.Libtorch.VersionSource, m.Libtorch.CXX11ABI)
	fmt.Fprintf(w, "          %s\n", m.Libtorch.LibDir)
	fmt.Fprintf(w, "gotch     %s, prepared copy with %d ops stubbed for this libtorch; patches: %s\n", m.Gotch, len(m.Stubbed), strings.Join(m.Patches, ", "))
	if info.CUDAAvailable {
		fmt.Fprintf(w, "cuda      available: %d device(s), cuDNN %v\n", info.CUDADevices, info.CuDNN)
	} else {
		why := "this libtorch is a CPU build"
		if m.Device == "cuda" {
			why = "libtorch has CUDA but sees no device"
		}
		fmt.Fprintf(w, "cuda      not available (%s)\n", why)
	}
	for i, g := range info.GPUs {
		fmt.Fprintf(w, "gpu %d     %s\n", i, g)
	}
	if len(info.GPUs) == 0 {
		fmt.Fprintf(w, "gpu       none (%s)\n", info.GPUNote)
	}
	if m.HasOp("atg_scaled_dot_product_attention") {
		fmt.Fprintf(w, "attention fused scaled_dot_product_attention (REPRO_ATTENTION=math for the matmul path)\n")
	} else {
		fmt.Fprintf(w, "attention matmul and softmax (this libtorch has no fused scaled_dot_product_attention)\n")
	}
	fmt.Fprintf(w, "cpu       %s\n", CPUKernels())
	fmt.Fprintf(w, "threads   %d intra-op, %d inter-op\n", info.Threads, info.InteropThreads)
	if info.BLASPath != "" {
		fmt.Fprintf(w, "blas      %s (%s)\n", info.BLAS, info.BLASPath)
	} else {
		fmt.Fprintf(w, "blas      %s\n", info.BLAS)
	}
	fmt.Fprintf(w, "dist      %s\n", strings.Join(info.Distributed, "; "))
	fmt.Fprintf(w, "go        %s\n", info.Go)
	fmt.Fprintf(w, "check     %s\n", info.Check)
}
