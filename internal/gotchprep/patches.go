package gotchprep

import (
	"crypto/sha256"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// overlay holds whole files added to the copy; "x.go.in" becomes "x.go".
// They are not named .go here, since they belong to gotch's packages.
//
//go:embed overlay
var overlay embed.FS

// patchSource is this file, so that editing any patch changes the digest.
//
//go:embed patches.go
var patchSource string

// A Patch is one reviewed change to the gotch copy, applied to the pristine
// files before stubbing. Each says why it exists and what it was measured
// to do; each fails loudly when gotch's text is not what it expects.
type Patch struct {
	Name   string
	Reason string
	Apply  func(root string) error
}

// Patches are applied in order.
var Patches = []Patch{
	{
		Name: "overlay",
		Reason: "adds repro's files to gotch: deterministic tensor lifetime (ts.Scope, ts.LiveTensors), " +
			"the libtch helpers they need, and glibc malloc tuning that stops libtorch's CPU buffers " +
			"being faulted in again every step (MLP step 161 ms -> 134 ms)",
		Apply: applyOverlay,
	},
	{
		Name: "tensor-lifetime",
		Reason: "drops the 100 KB ballast, global mutex, name map and Sprintf that stock gotch spends on every " +
			"tensor and scalar (replaced by repro_lifetime.go); frees a tensor's handle exactly once",
		Apply: func(root string) error {
			return editFiles(root, []edit{
				{"ts/tensor.go", removeFunc("func newTensor(")},
				{"ts/tensor.go", removeFunc("func freeCTensor(")},
				{"ts/tensor.go", removeFunc("func CheckCMemLeak(")},
				{"ts/tensor.go", replace("type bigStruct struct {\n\tlots [1e5]byte // 100k - always on host memory.\n}\n", "", 1)},
				{"ts/tensor.go", replace("\td          *bigStruct\n", "\ttracked    bool   // owned by the finalizer, not a Scope\n\tkept       bool   // exempt from its Scope's Close\n\tscope      *Scope // the Scope that will free it, if any\n\tpersist    bool   // leaves its Scope for the finalizer (see Persist)\n", 1)},
				// Grad mode is thread-local in libtorch, and goroutines move between threads:
				// stock NoGrad could disable it on one thread and re-enable it on another, and a
				// panic skipped the re-enable. repro_lifetime.go's versions pin the thread and defer.
				{"ts/tensor.go", removeFunc("func NoGrad(")},
				{"ts/tensor.go", removeFunc("func NoGrad1(")},
				{"ts/scalar.go", removeFunc("func newScalar(")},
				{"ts/scalar.go", removeFunc("func freeCScalar(")},
				{"ts/scalar.go", replace("\t\"log\"\n\t\"runtime\"\n\t\"sync/atomic\"\n\n\t\"github.com/sugarme/gotch\"\n", "\n", 1)},
				{"ts/tensor.go", replace("\t\"sync/atomic\"\n", "", 1)},
				{"libtch/torch_api.cpp", appendText(nbytesCpp)},
			})
		},
	},
	{
		Name: "op-handles",
		Reason: "every op got its output pointers from C.malloc(0), never freed (a leak per op) and too small " +
			"for ops with more than three outputs (a heap overflow); in-place ops replaced the tensor's C++ " +
			"handle without deleting the old one (a leak per in-place op, and a reference that kept the storage alive)",
		Apply: func(root string) error {
			return editFiles(root, []edit{
				{"ts/tensor-generated.go", replace("(*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))", "outBuf()", 2447)},
				{"ts/tensor-generated.go", replace("\n  ts.ctensor = *ptr\n", "\n  lib.AtFree(ts.ctensor)\n  ts.ctensor = *ptr\n", 260)},
				// Float64Values converted to float64 and never freed the copy.
				{"ts/tensor.go", replace("\t// float64Ts.MustDrop()\n", "\tfloat64Ts.MustDrop()\n", 1)},
			})
		},
	},
	{
		Name: "must-panics",
		Reason: "gotch's Must* ops called log.Fatal, ending the process on any error (a shape mistake " +
			"included); they panic with the error instead, which torchmods recovers into a returned error",
		Apply: func(root string) error {
			return editFiles(root, []edit{
				{"ts/must-tensor-generated.go", replace("  if err != nil { log.Fatal(err) }\n", "  if err != nil { panic(err) }\n", 2485)},
				{"ts/must-tensor-generated.go", replace("import(\n  \"log\"\n\n", "import(\n", 1)},
				{"ts/tensor.go", replace("log.Fatal(err)\n", "panic(err)\n", 34)},
				{"ts/patch.go", replace("log.Fatal(err)\n", "panic(err)\n", 14)},
				{"ts/patch.go", replace("\t\"log\"\n", "", 1)},
				{"ts/tensor.go", replace("\t\"log\"\n", "", 1)},
			})
		},
	},
	{
		Name: "c-int-returns",
		Reason: "three libtch functions read a 4-byte C int through an 8-byte Go *int, returning garbage in " +
			"the upper half: at_grad_set_enabled's previous grad mode (so restoring it disabled gradients), " +
			"at_device (a tensor's device) and the CUDA device count",
		Apply: func(root string) error {
			return editFiles(root, []edit{
				{"libtch/tensor.go", replace("\treturn *(*int)(unsafe.Pointer(&cretVal))\n", "\treturn int(cretVal)\n", 1)},
				{"libtch/tensor.go", replace("\treturn *(*int)(unsafe.Pointer(&cint))\n", "\treturn int(cint)\n", 1)},
				{"libtch/device.go", replace("\treturn *(*int)(unsafe.Pointer(&t))\n", "\treturn int(t)\n", 1)},
				{"libtch/device.go", replace("import (\n\t\"unsafe\"\n)\n", "", 1)},
			})
		},
	},
	{
		Name: "sdpa-no-mask",
		Reason: "scaled_dot_product_attention got an undefined tensor, not nullopt, for a missing attn_mask, " +
			"which libtorch 2.11 refuses (\"Expected attn_mask dtype to be bool or float ... got nullptr\"); " +
			"a missing or undefined mask now passes nullopt, which also leaves the flash kernel eligible",
		Apply: func(root string) error {
			return editFiles(root, []edit{
				{"libtch/torch_api_generated.cpp.h", replace(
					"torch::scaled_dot_product_attention(*query, *key, *value, (attn_mask ? *attn_mask : torch::Tensor()),",
					"torch::scaled_dot_product_attention(*query, *key, *value, (attn_mask && attn_mask->defined() ? c10::optional<torch::Tensor>(*attn_mask) : c10::optional<torch::Tensor>()),", 1)},
			})
		},
	},
	{
		Name: "keep-alive",
		Reason: "an op passed its arguments' C handles to libtorch and let the Go *Tensor and *Scalar objects " +
			"die during the call, so a garbage collection running meanwhile could free them under libtorch " +
			"(a use after free: every ts.FloatScalar argument, and unscoped temporaries); each op now keeps " +
			"its arguments alive until the call returns (found by concurrent forward passes: " +
			"\"Expected false to be true\" from a freed Scalar in mul)",
		Apply: func(root string) error {
			return editFiles(root, []edit{
				{"ts/tensor-generated.go", keepOpArgsAlive(2447)},
				{"ts/tensor-generated.go", replace("import(\n  \"unsafe\"\n", "import(\n  \"runtime\"\n  \"unsafe\"\n", 1)},
			})
		},
	},
}

var (
	// argHandle is an op argument's C handle, "weight.ctensor" or "other.cscalar".
	argHandle = regexp.MustCompile(`\b([A-Za-z_][A-Za-z0-9_]*)\.(?:ctensor|cscalar)\b`)
	// flattened is how generated code flattens a []*Tensor argument for C.
	flattened = regexp.MustCompile(`^for _, t := range ([A-Za-z_][A-Za-z0-9_]*) \{(c[A-Za-z0-9_]*) = append\(c[A-Za-z0-9_]*, t\.ctensor\)\}$`)
	word      = regexp.MustCompile(`\b[A-Za-z_][A-Za-z0-9_]*\b`)
)

// keepOpArgsAlive follows every op call ("lib.Atg...(...)" on a line of its
// own) with runtime.KeepAlive for each *Tensor and *Scalar whose handle the
// call passes, and for each []*Tensor it flattened into a handle slice, and
// insists on finding want calls.
func keepOpArgsAlive(want int) func(string) (string, error) {
	return func(src string) (string, error) {
		lines := strings.Split(src, "\n")
		out := make([]string, 0, len(lines)+3*want)
		lists := map[string]string{} // handle slice -> the []*Tensor it came from, in the current function
		calls := 0
		for _, l := range lines {
			out = append(out, l)
			t := strings.TrimSpace(l)
			if strings.HasPrefix(l, "func") {
				lists = map[string]string{}
			}
			if m := flattened.FindStringSubmatch(t); m != nil {
				lists[m[2]] = m[1]
			}
			if !strings.HasPrefix(t, "lib.Atg") || !strings.HasSuffix(t, ")") {
				continue
			}
			calls++
			seen := map[string]bool{}
			keep := func(v string) {
				if !seen[v] {
					seen[v] = true
					out = append(out, "  runtime.KeepAlive("+v+")")
				}
			}
			for _, m := range argHandle.FindAllStringSubmatch(t, -1) {
				keep(m[1])
			}
			for _, w := range word.FindAllString(t, -1) {
				if v, ok := lists[w]; ok {
					keep(v)
				}
			}
		}
		if calls != want {
			return "", fmt.Errorf("expected %d op calls, found %d: gotch is not the version these patches were written for", want, calls)
		}
		return strings.Join(out, "\n"), nil
	}
}

const nbytesCpp = `
// Added by repro (patch "tensor-lifetime").
extern "C" int64_t at_repro_nbytes(tensor t) {
  try {
    return t->defined() ? (int64_t)t->nbytes() : 0;
  } catch (...) {
    return 0;
  }
}

// The default CPU generator's state (torch.get_rng_state / set_rng_state), for resumable runs.
#include <ATen/CPUGeneratorImpl.h>
extern "C" tensor at_repro_get_rng_state() {
  PROTECT(
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return new torch::Tensor(gen.get_state());
  )
  return nullptr;
}
extern "C" void at_repro_set_rng_state(tensor state) {
  PROTECT(
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(*state);
  )
}

// torch.autograd.grad: gotch's RunBackward reads past its inputs for more than one tensor.
extern "C" void at_repro_grad(tensor *outputs, int n_out, tensor *inputs, int n_in, tensor *grads, int create_graph) {
  PROTECT(
    std::vector<torch::Tensor> outs;
    std::vector<torch::Tensor> ins;
    for (int i = 0; i < n_out; i++) outs.push_back(*outputs[i]);
    for (int i = 0; i < n_in; i++) ins.push_back(*inputs[i]);
    auto g = torch::autograd::grad(outs, ins, {}, c10::nullopt, (bool)create_graph, /*allow_unused=*/true);
    for (int i = 0; i < n_in; i++) grads[i] = new torch::Tensor(g[i]);
  )
}

// Autocast (torch.autocast) for one device type. Entering returns the previous
// state packed as enabled | dtype<<8, for at_repro_autocast_exit to restore.
// libtorch 2.4 replaced the per-backend setters with ones taking a device type.
#include <torch/version.h>
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define REPRO_AUTOCAST_NEW_API 1
#endif
static int repro_autocast_set(int cuda, int enabled, int dtype) {
  at::DeviceType dev = cuda ? at::kCUDA : at::kCPU;
#ifdef REPRO_AUTOCAST_NEW_API
  int prev = (int)at::autocast::is_autocast_enabled(dev) | ((int)at::autocast::get_autocast_dtype(dev) << 8);
  at::autocast::set_autocast_dtype(dev, at::ScalarType(dtype));
  at::autocast::set_autocast_enabled(dev, (bool)enabled);
#else
  int prev;
  if (cuda) {
    prev = (int)at::autocast::is_enabled() | ((int)at::autocast::get_autocast_gpu_dtype() << 8);
    at::autocast::set_autocast_gpu_dtype(at::ScalarType(dtype));
    at::autocast::set_enabled((bool)enabled);
  } else {
    prev = (int)at::autocast::is_cpu_enabled() | ((int)at::autocast::get_autocast_cpu_dtype() << 8);
    at::autocast::set_autocast_cpu_dtype(at::ScalarType(dtype));
    at::autocast::set_cpu_enabled((bool)enabled);
  }
#endif
  return prev;
}
extern "C" int at_repro_autocast_enter(int cuda, int dtype) {
  PROTECT(
    int prev = repro_autocast_set(cuda, 1, dtype);
    at::autocast::increment_nesting();
    return prev;
  )
  return -1;
}
extern "C" void at_repro_autocast_exit(int cuda, int prev) {
  PROTECT(
    repro_autocast_set(cuda, prev & 1, prev >> 8);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  )
}
`

// patchesDigest identifies a patch set, so a change to any patch or
// overlay file re-prepares copies made before it.
func patchesDigest(patches []Patch) string {
	h := sha256.New()
	if len(patches) == 0 {
		return "none"
	}
	h.Write([]byte(patchSource))
	for _, p := range patches {
		fmt.Fprintf(h, "%s\n%s\n", p.Name, p.Reason)
	}
	fs.WalkDir(overlay, "overlay", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := overlay.ReadFile(p)
			fmt.Fprintf(h, "%s %d\n", p, len(b))
			h.Write(b)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}

func applyPatches(root string, patches []Patch) error {
	for _, p := range patches {
		if err := p.Apply(root); err != nil {
			return fmt.Errorf("gotch patch %q: %w", p.Name, err)
		}
	}
	return nil
}

func applyOverlay(root string) error {
	return fs.WalkDir(overlay, "overlay", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, "overlay/"), ".in")
		b, err := overlay.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, rel)
		if _, err := os.Stat(dst); err == nil {
			return fmt.Errorf("overlay file %s would replace gotch's own %s", p, rel)
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

type edit struct {
	file string
	fn   func(src string) (string, error)
}

func editFiles(root string, edits []edit) error {
	for _, e := range edits {
		p := filepath.Join(root, e.file)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out, err := e.fn(string(b))
		if err != nil {
			return fmt.Errorf("%s: %w", e.file, err)
		}
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// replace swaps old for new, insisting on exactly want occurrences (any
// number but zero when want is -1).
func replace(old, new string, want int) func(string) (string, error) {
	return func(src string) (string, error) {
		n := strings.Count(src, old)
		if (want >= 0 && n != want) || (want < 0 && n == 0) {
			return "", fmt.Errorf("expected %d occurrences of %q, found %d: gotch is not the version these patches were written for", want, firstLine(old), n)
		}
		return strings.ReplaceAll(src, old, new), nil
	}
}

// removeFunc deletes a top-level function, from its signature at the start
// of a line to the first closing brace at the start of a line, and any doc
// comment directly above it.
func removeFunc(signature string) func(string) (string, error) {
	return func(src string) (string, error) {
		start := strings.Index(src, "\n"+signature)
		if start < 0 {
			return "", fmt.Errorf("function %q not found", signature)
		}
		start++
		end := strings.Index(src[start:], "\n}\n")
		if end < 0 {
			return "", fmt.Errorf("end of function %q not found", signature)
		}
		end += start + len("\n}\n")
		for { // doc comment lines directly above
			prev := strings.LastIndex(src[:start-1], "\n") + 1
			if !strings.HasPrefix(src[prev:start], "//") {
				break
			}
			start = prev
		}
		return src[:start] + src[end:], nil
	}
}

func appendText(text string) func(string) (string, error) {
	return func(src string) (string, error) { return src + text, nil }
}

func firstLine(s string) string {
	s = strings.TrimLeft(s, "\n")
	if i := strings.Index(s, "\n"); i >= 0 {
		return s[:i] + "..."
	}
	return s
}
