// Package gotchprep prepares a local copy of gotch for one libtorch.
//
// gotch v0.9.1 pins libtorch 2.1.0: its lib.go names fixed paths and its
// generated C++ wrappers call ops that other releases lack or spell
// differently. Rather than keep hand-made lists per release, the copy is
// rebuilt from its pristine files, given a lib.go for the chosen libtorch,
// and every wrapper that does not compile against it is found by compiling
// and replaced by a stub that raises a clear error. The result is recorded in
// a manifest, so preparing again for the same libtorch changes nothing.
package gotchprep

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// GotchVersion is the gotch release this preparation is written for.
const GotchVersion = "v0.9.1"

// toolVersion changes whenever what Prepare writes changes, so copies
// prepared by an older repro are rebuilt.
const toolVersion = "2"

// PristineDir holds the untouched module files inside the copy. It starts
// with a dot so the go command ignores it.
const PristineDir = ".pristine"

// ManifestFile records what the copy was prepared for.
const ManifestFile = "REPRO_MANIFEST.json"

// skipped are module folders the build never needs: gotch's examples and its
// OCaml generator make up 90 MB of the module's 94 MB.
var skipped = map[string]bool{"example": true, "gen": true}

// Manifest is written into the copy (as JSON, and as a Go constant that
// `repro info` prints) once preparation has succeeded.
type Manifest struct {
	Key          string    `json:"key"`
	Gotch        string    `json:"gotch"`
	Libtorch     *Libtorch `json:"libtorch"`
	Device       string    `json:"device"` // "cpu" or "cuda"
	Patches      []string  `json:"patches"`
	Stubbed      []string  `json:"stubbed_ops"`
	CompilerPass int       `json:"compiler_passes"`
}

// Checker compiles libtch/torch_api.cpp in dir against lt and returns the
// compiler's diagnostics; ok reports a clean compile.
type Checker func(libtchDir string, lt *Libtorch) (log string, ok bool, err error)

// Options says what to prepare and from what.
type Options struct {
	Dest     string    // the copy, e.g. third_party/gotch
	Source   string    // gotch's module directory; needed only if Dest has no pristine files
	Libtorch *Libtorch // what to prepare for
	Check    Checker   // how to find failing wrappers
	Patches  []Patch   // applied to the pristine files first; see Patches
	Log      io.Writer // progress messages
}

// Result reports what Prepare did.
type Result struct {
	Manifest  *Manifest
	Unchanged bool // the copy was already prepared for this libtorch
}

// Prepare makes Dest a gotch copy prepared for opts.Libtorch.
func Prepare(opts Options) (*Result, error) {
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", a...)
		}
	}
	pristine := filepath.Join(opts.Dest, PristineDir)
	if _, err := os.Stat(filepath.Join(pristine, "go.mod")); err != nil {
		if opts.Source == "" {
			return nil, fmt.Errorf("%s has no pristine gotch files and no module source was given; run scripts/install_libtorch.sh on a machine with the Go module cache or network first", opts.Dest)
		}
		logf("copying gotch %s from %s", GotchVersion, opts.Source)
		if err := os.MkdirAll(opts.Dest, 0o755); err != nil {
			return nil, err
		}
		tmp := pristine + ".tmp"
		os.RemoveAll(tmp)
		if err := copyTree(opts.Source, tmp, skipped); err != nil {
			return nil, fmt.Errorf("copying gotch into %s: %w", opts.Dest, err)
		}
		if err := os.Rename(tmp, pristine); err != nil {
			return nil, err
		}
	}

	key, err := manifestKey(opts.Libtorch, opts.Patches)
	if err != nil {
		return nil, err
	}
	if m, err := ReadManifest(opts.Dest); err == nil && m.Key == key {
		return &Result{Manifest: m, Unchanged: true}, nil
	}

	logf("preparing %s for libtorch %s (%s, C++11 ABI %d)", opts.Dest, opts.Libtorch.Version, deviceOf(opts.Libtorch), opts.Libtorch.CXX11ABI)
	// The manifest goes first so an interrupted preparation is redone.
	os.Remove(filepath.Join(opts.Dest, ManifestFile))
	if err := resetFromPristine(opts.Dest); err != nil {
		return nil, err
	}
	var patchNames []string
	for _, p := range opts.Patches {
		logf("patch %s: %s", p.Name, p.Reason)
		patchNames = append(patchNames, p.Name)
	}
	if err := applyPatches(opts.Dest, opts.Patches); err != nil {
		return nil, err
	}
	libtch := filepath.Join(opts.Dest, "libtch")
	if err := os.WriteFile(filepath.Join(libtch, "lib.go"), []byte(LibGo(opts.Libtorch)), 0o644); err != nil {
		return nil, err
	}

	genPath := filepath.Join(libtch, GeneratedFile)
	orig, err := os.ReadFile(genPath)
	if err != nil {
		return nil, err
	}
	wrappers, err := ParseWrappers(string(orig))
	if err != nil {
		return nil, err
	}
	stubbed := map[string]bool{}
	passes := 0
	for {
		passes++
		logf("compiler pass %d: checking gotch's C++ wrappers against libtorch %s (g++ -fsyntax-only, about 15 s)", passes, opts.Libtorch.Version)
		log, ok, err := opts.Check(libtch, opts.Libtorch)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		failing, orphans := FailingWrappers(log, wrappers)
		var fresh []string
		for _, n := range failing {
			if !stubbed[n] {
				fresh = append(fresh, n)
			}
		}
		if len(fresh) == 0 || len(orphans) > 0 || passes >= 5 {
			return nil, fmt.Errorf("gotch's C++ does not compile against libtorch %s, and not only in generated wrappers that can be stubbed; compiler output:\n%s", opts.Libtorch.Version, headLines(log, 60))
		}
		for _, n := range fresh {
			stubbed[n] = true
		}
		names := sortedKeys(stubbed)
		src, err := Stub(string(orig), wrappers, names, opts.Libtorch.Version)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(genPath, []byte(src), 0o644); err != nil {
			return nil, err
		}
		logf("stubbed %d wrappers that do not compile against libtorch %s", len(names), opts.Libtorch.Version)
	}

	m := &Manifest{
		Key:          key,
		Gotch:        GotchVersion,
		Libtorch:     opts.Libtorch,
		Device:       deviceOf(opts.Libtorch),
		Patches:      append([]string{}, patchNames...),
		Stubbed:      sortedKeys(stubbed),
		CompilerPass: passes,
	}
	if m.Stubbed == nil {
		m.Stubbed = []string{}
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(libtch, "repro_manifest.go"), []byte(manifestGo(js)), 0o644); err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(opts.Dest, ManifestFile), append(js, '\n')); err != nil {
		return nil, err
	}
	return &Result{Manifest: m}, nil
}

// ReadManifest reads the manifest of a prepared copy.
func ReadManifest(dest string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dest, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dest, ManifestFile), err)
	}
	return &m, nil
}

func deviceOf(lt *Libtorch) string {
	if lt.CUDA {
		return "cuda"
	}
	return "cpu"
}

func manifestKey(lt *Libtorch, patches []Patch) (string, error) {
	js, err := json.Marshal(lt)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "gotch %s\ntool %s\npatches %s\n", GotchVersion, toolVersion, patchesDigest(patches))
	h.Write(js)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// LibGo is the cgo preamble that links gotch against lt. The rpath lets a
// binary find libtorch without LD_LIBRARY_PATH; --no-as-needed keeps
// libtorch_cuda linked although no symbol of it is referenced directly
// (its static initialisers register the CUDA backend).
func LibGo(lt *Libtorch) string {
	var inc []string
	for _, d := range lt.IncludeDirs {
		inc = append(inc, "-I"+d)
	}
	libs := "-ltorch -ltorch_cpu -lc10"
	if lt.CUDA {
		libs += " -ltorch_cuda -lc10_cuda"
	}
	abi := fmt.Sprintf("-D_GLIBCXX_USE_CXX11_ABI=%d", lt.CXX11ABI)
	return fmt.Sprintf(`// Code generated by repro's scripts/install_libtorch.sh for libtorch %s (%s); DO NOT EDIT.

package libtch

// #cgo LDFLAGS: -L%s -Wl,-rpath,%s -Wl,--no-as-needed %s -lstdc++
// #cgo CFLAGS: -I${SRCDIR} -O3 -Wall -Wno-unused-variable -Wno-deprecated-declarations -Wno-c++11-narrowing -Wno-sign-compare -Wno-unused-function
// #cgo CFLAGS: %s
// #cgo CXXFLAGS: -std=%s -I${SRCDIR} %s -O2 -w %s
import "C"
`, lt.Version, deviceOf(lt), lt.LibDir, lt.LibDir, libs, abi, lt.CXXStd, strings.Join(inc, " "), abi)
}

func manifestGo(js []byte) string {
	return fmt.Sprintf("// Code generated by repro's scripts/install_libtorch.sh; DO NOT EDIT.\n\npackage libtch\n\n// ReproManifest records the libtorch this copy of gotch was prepared for\n// and the wrappers that were stubbed because they do not compile against it.\nconst ReproManifest = %s\n", "`"+string(js)+"`")
}

// resetFromPristine removes everything in dest but the pristine files and
// copies those back, so no edit of an earlier preparation survives.
func resetFromPristine(dest string) error {
	entries, err := os.ReadDir(dest)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == PristineDir {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dest, e.Name())); err != nil {
			return err
		}
	}
	return copyTree(filepath.Join(dest, PristineDir), dest, map[string]bool{PristineDir: true})
}

// copyTree copies regular files from src into dst with owner-write
// permission (the module cache is read-only), skipping top-level names in skip.
func copyTree(src, dst string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel != "." && !strings.Contains(rel, string(filepath.Separator)) && skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(p, target, info.Mode().Perm()|0o200)
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func headLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}

// ErrNoCompiler is returned by GXXChecker when no C++ compiler is found.
var ErrNoCompiler = errors.New("no C++ compiler found: install g++ (apt-get install g++)")
