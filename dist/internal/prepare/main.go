// Command prepare writes dist/zz_libtorch_generated.go, the cgo flags that
// compile package dist's C++ shim against the libtorch third_party/gotch was
// prepared for, and records which c10d backends that build has. It is run by
// scripts/install_libtorch.sh after gotch is prepared:
//
//	go run ./dist/internal/prepare [-gotch third_party/gotch] [-out dist/zz_libtorch_generated.go]
//
// What it decides, from the gotch manifest and by compiling:
//
//   - Gloo: ProcessGroupGloo.hpp includes gloo's own headers, which Debian's
//     libtorch-dev does not ship (libgloo-dev does; the install script
//     installs it). They are looked for in the libtorch's include dirs, in
//     GLOO_INCLUDE_DIR and in /usr/include.
//   - NCCL: only for a libtorch with CUDA whose libtorch_cuda exports
//     ProcessGroupNCCL, and only if ProcessGroupNCCL.hpp compiles (it needs
//     CUDA's and NCCL's headers: CUDA_HOME, NCCL_INCLUDE_DIR, and for a
//     PyTorch install the nvidia/*/include folders beside torch/).
//   - A libtorch without c10d's symbols, or whose headers do not compile,
//     gets a build whose every call returns an error saying so.
//
// The shim is compiled in syntax-only mode (about 10 s per try) only when
// the manifest, the shim or this program changed: running it again changes
// nothing.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/reprolab/repro/internal/gotchprep"
)

// version changes whenever what this program writes changes.
const version = "1"

// Build is what the generated file records.
type Build struct {
	Key      string `json:"key"`
	Libtorch string `json:"libtorch"`
	Device   string `json:"device"`
	Gloo     bool   `json:"gloo"`
	NCCL     bool   `json:"nccl"`
	// Why a backend is missing, by name ("gloo", "nccl", "c10d").
	Missing  map[string]string `json:"missing,omitempty"`
	CXXFlags []string          `json:"cxxflags"`
	LDFlags  []string          `json:"ldflags"`
}

func main() {
	gotchDir := flag.String("gotch", "third_party/gotch", "the prepared gotch copy (its REPRO_MANIFEST.json)")
	out := flag.String("out", "dist/zz_libtorch_generated.go", "the file to write")
	shimDir := flag.String("shim", "dist", "the folder with shim.cpp and shim.h")
	flag.Parse()
	if err := run(*gotchDir, *out, *shimDir); err != nil {
		fmt.Fprintln(os.Stderr, "dist/prepare:", err)
		os.Exit(1)
	}
}

func run(gotchDir, out, shimDir string) error {
	m, err := gotchprep.ReadManifest(gotchDir)
	if err != nil {
		return fmt.Errorf("reading the gotch manifest (prepare gotch first): %w", err)
	}
	lt := m.Libtorch
	key, err := buildKey(m, shimDir)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(out); err == nil && bytes.Contains(old, []byte(`"key": "`+key+`"`)) {
		fmt.Printf("dist: already prepared for libtorch %s, nothing changed\n", lt.Version)
		return nil
	}

	b := &Build{Key: key, Libtorch: lt.Version, Device: m.Device, Missing: map[string]string{}}
	base := []string{"-std=" + lt.CXXStd, fmt.Sprintf("-D_GLIBCXX_USE_CXX11_ABI=%d", lt.CXX11ABI), "-DREPRO_DIST_PREPARED"}
	for _, d := range lt.IncludeDirs {
		base = append(base, "-I"+d)
	}
	ld := []string{"-L" + lt.LibDir, "-Wl,-rpath," + lt.LibDir, "-ltorch_cpu", "-lc10"}

	cpu := filepath.Join(lt.LibDir, "libtorch_cpu.so")
	if ok, err := exports(cpu, "c10d8TCPStore", "c10d11PrefixStore"); err != nil || !ok {
		why := "libtorch_cpu.so exports no c10d TCPStore (a libtorch built with USE_DISTRIBUTED=0)"
		if err != nil {
			why = err.Error()
		}
		return write(out, disabled(b, base, why))
	}

	var gloo, nccl, ncclLD []string
	if ok, _ := exports(cpu, "c10d16ProcessGroupGloo"); !ok {
		b.Missing["gloo"] = "libtorch_cpu.so exports no ProcessGroupGloo"
	} else if dir, found := findGloo(lt); !found {
		b.Missing["gloo"] = "gloo's headers (gloo/algorithm.h) were not found; on Debian or Ubuntu: apt-get install libgloo-dev, else set GLOO_INCLUDE_DIR"
	} else {
		gloo = []string{"-DUSE_C10D_GLOO", "-DREPRO_DIST_GLOO"}
		if dir != "/usr/include" {
			gloo = append(gloo, "-I"+dir)
		}
	}
	if !lt.CUDA {
		b.Missing["nccl"] = "the prepared libtorch has no CUDA"
	} else if ok, _ := exports(filepath.Join(lt.LibDir, "libtorch_cuda.so"), "c10d16ProcessGroupNCCL"); !ok {
		b.Missing["nccl"] = "libtorch_cuda.so exports no ProcessGroupNCCL"
	} else {
		nccl = []string{"-DUSE_C10D_NCCL", "-DREPRO_DIST_NCCL"}
		for _, d := range cudaIncludes(lt) {
			nccl = append(nccl, "-I"+d)
		}
		ncclLD = []string{"-ltorch_cuda", "-lc10_cuda"}
	}

	// Try the richest build first, then drop NCCL, then Gloo.
	type try struct{ gloo, nccl bool }
	var tries []try
	for _, t := range []try{{true, true}, {true, false}, {false, true}, {false, false}} {
		if (t.gloo && gloo == nil) || (t.nccl && nccl == nil) {
			continue
		}
		tries = append(tries, t)
	}
	for _, t := range tries {
		flags := append([]string{}, base...)
		lflags := append([]string{}, ld...)
		if t.gloo {
			flags = append(flags, gloo...)
		}
		if t.nccl {
			flags, lflags = append(flags, nccl...), append(lflags, ncclLD...)
		}
		fmt.Printf("dist: checking the c10d shim against libtorch %s (gloo %v, nccl %v; g++ -fsyntax-only, about 10 s)\n", lt.Version, t.gloo, t.nccl)
		log, ok, err := compiles(filepath.Join(shimDir, "shim.cpp"), flags)
		if err != nil {
			return err
		}
		if !ok {
			reason := "the shim does not compile against it: " + firstError(log)
			switch {
			case t.nccl:
				b.Missing["nccl"] = reason
			case t.gloo:
				b.Missing["gloo"] = reason
			default:
				b.Missing["c10d"] = reason
			}
			continue
		}
		b.Gloo, b.NCCL = t.gloo, t.nccl
		b.CXXFlags, b.LDFlags = flags, append(lflags, "-lstdc++")
		return write(out, b)
	}
	why := "no c10d backend compiles against this libtorch"
	if r := b.Missing["c10d"]; r != "" {
		why = r
	}
	return write(out, disabled(b, base, why))
}

func disabled(b *Build, base []string, why string) *Build {
	b.Gloo, b.NCCL = false, false
	b.Missing["c10d"] = why
	b.CXXFlags = append(append([]string{}, base[:2]...), "-DREPRO_DIST_PREPARED", "-DREPRO_DIST_DISABLED")
	b.LDFlags = []string{"-lstdc++"}
	return b
}

// buildKey changes when the libtorch, the shim or this program changes.
func buildKey(m *gotchprep.Manifest, shimDir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "dist prepare %s\nmanifest %s\n", version, m.Key)
	for _, f := range []string{"shim.cpp", "shim.h"} {
		b, err := os.ReadFile(filepath.Join(shimDir, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	for _, v := range []string{"GLOO_INCLUDE_DIR", "CUDA_HOME", "NCCL_INCLUDE_DIR", "CXX"} {
		fmt.Fprintf(h, "%s=%s\n", v, os.Getenv(v))
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// exports reports whether lib's dynamic symbols include, for each of the
// substrings, a defined symbol containing it.
func exports(lib string, subs ...string) (bool, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", lib, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false, fmt.Errorf("reading the dynamic symbols of %s: %w", lib, err)
	}
	found := make([]bool, len(subs))
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF {
			continue
		}
		for i, sub := range subs {
			if !found[i] && strings.Contains(s.Name, sub) {
				found[i] = true
			}
		}
	}
	for _, f := range found {
		if !f {
			return false, nil
		}
	}
	return true, nil
}

// findGloo is the folder holding gloo/algorithm.h: the libtorch's own
// (PyTorch installs may ship them), GLOO_INCLUDE_DIR, then the system's.
func findGloo(lt *gotchprep.Libtorch) (string, bool) {
	dirs := append([]string{}, lt.IncludeDirs...)
	if d := os.Getenv("GLOO_INCLUDE_DIR"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	dirs = append(dirs, "/usr/include", "/usr/local/include")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "gloo", "algorithm.h")); err == nil {
			return d, true
		}
	}
	return "", false
}

// cudaIncludes are the folders with CUDA's and NCCL's headers that exist:
// CUDA_HOME (or /usr/local/cuda), NCCL_INCLUDE_DIR, and for a PyTorch
// install the nvidia/*/include folders of the pip packages beside torch/.
func cudaIncludes(lt *gotchprep.Libtorch) []string {
	var cands []string
	if h := os.Getenv("CUDA_HOME"); h != "" {
		cands = append(cands, filepath.Join(h, "include"))
	}
	cands = append(cands, "/usr/local/cuda/include")
	if d := os.Getenv("NCCL_INCLUDE_DIR"); d != "" {
		cands = append(cands, d)
	}
	if lt.Root != "system" {
		if g, err := filepath.Glob(filepath.Join(filepath.Dir(lt.Root), "nvidia", "*", "include")); err == nil {
			cands = append(cands, g...)
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, d := range cands {
		if st, err := os.Stat(d); err == nil && st.IsDir() && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func compiles(src string, flags []string) (string, bool, error) {
	cxx := os.Getenv("CXX")
	if cxx == "" {
		cxx = "g++"
	}
	if _, err := exec.LookPath(cxx); err != nil {
		return "", false, fmt.Errorf("no C++ compiler (%s) on PATH", cxx)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"-fsyntax-only", "-w"}, flags...)
	cmd := exec.CommandContext(ctx, cxx, append(args, src)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), true, nil
	case errors.As(err, &exit):
		return out.String(), false, nil
	default:
		return out.String(), false, fmt.Errorf("running %s: %w", cxx, err)
	}
}

func firstError(log string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "error") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(log)
}

func write(out string, b *Build) error {
	js, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "// Code generated by dist/internal/prepare (scripts/install_libtorch.sh) for libtorch %s; DO NOT EDIT.\n\npackage dist\n\n", b.Libtorch)
	fmt.Fprintf(&s, "// #cgo CXXFLAGS: %s -O2 -w\n", strings.Join(b.CXXFlags, " "))
	fmt.Fprintf(&s, "// #cgo LDFLAGS: %s\n", strings.Join(b.LDFlags, " "))
	s.WriteString("import \"C\"\n\n")
	s.WriteString("// prepared is what scripts/install_libtorch.sh found: the backends this\n// build compiled and why any is missing.\n")
	fmt.Fprintf(&s, "const prepared = `%s`\n", js)
	if err := os.WriteFile(out, []byte(s.String()), 0o644); err != nil {
		return err
	}
	var have []string
	if b.Gloo {
		have = append(have, "gloo")
	}
	if b.NCCL {
		have = append(have, "nccl")
	}
	if len(have) == 0 {
		have = []string{"none"}
	}
	fmt.Printf("dist: prepared for libtorch %s: backends %s\n", b.Libtorch, strings.Join(have, ", "))
	for _, k := range []string{"gloo", "nccl", "c10d"} {
		if r := b.Missing[k]; r != "" {
			fmt.Printf("dist: no %s: %s\n", k, r)
		}
	}
	return nil
}
