package gotchprep

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeModule lays out the parts of gotch's module that preparation touches.
func fakeModule(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	files := map[string]string{
		"go.mod":                  "module github.com/sugarme/gotch\n\ngo 1.20\n",
		"libtch/lib.go":           "package libtch\n\n// #cgo LDFLAGS: -ltorch -L${SRCDIR}/libtorch/lib\nimport \"C\"\n",
		"libtch/torch_api.cpp":    "#include \"torch_api_generated.cpp.h\"\n",
		"libtch/" + GeneratedFile: sampleGenerated,
		"ts/tensor.go":            "package ts\n",
		"example/mnist/main.go":   "package main\n",
		"gen/gen.ml":              "(* generator *)\n",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o444)) // read-only, like the module cache
	}
	return src
}

// fakeChecker fails every wrapper whose body still calls one of the ops the
// pretend libtorch lacks, pointing at that line as g++ would.
func fakeChecker(missing ...string) (Checker, *int) {
	calls := 0
	return func(dir string, lt *Libtorch) (string, bool, error) {
		calls++
		b, err := os.ReadFile(filepath.Join(dir, GeneratedFile))
		if err != nil {
			return "", false, err
		}
		var log strings.Builder
		for i, line := range strings.Split(string(b), "\n") {
			for _, op := range missing {
				if strings.Contains(line, "torch::"+op+"(") || strings.Contains(line, "->"+op+"(") {
					fmt.Fprintf(&log, "%s:%d:22: error: '%s' is not a member of 'torch'\n", GeneratedFile, i+1, op)
				}
			}
		}
		return log.String(), log.Len() == 0, nil
	}, &calls
}

func testLibtorch(version string) *Libtorch {
	return &Libtorch{Root: "/opt/libtorch", Version: version, VersionSource: "build-version",
		IncludeDirs: []string{"/opt/libtorch/include", "/opt/libtorch/include/torch/csrc/api/include"},
		LibDir:      "/opt/libtorch/lib", CXX11ABI: 1, CXXStd: "c++17"}
}

func TestPrepareStubsWhatFailsAndRecordsIt(t *testing.T) {
	src := fakeModule(t)
	dest := filepath.Join(t.TempDir(), "gotch")
	check, calls := fakeChecker("_dimI", "_to_cpu")

	res, err := Prepare(Options{Dest: dest, Source: src, Libtorch: testLibtorch("1.13.1"), Check: check})
	require.NoError(t, err)
	assert.False(t, res.Unchanged)
	assert.Equal(t, []string{"atg__dimi", "atg__to_cpu"}, res.Manifest.Stubbed)
	assert.Equal(t, "cpu", res.Manifest.Device)
	assert.Equal(t, 2, *calls, "one pass finds the failures, a second proves the stubbed file compiles")

	gen := readFile(t, dest, "libtch/"+GeneratedFile)
	assert.Contains(t, gen, "torch::abs(*self)", "a wrapper that compiles is kept")
	assert.NotContains(t, gen, "_dimI()")
	assert.Contains(t, gen, "op _dimi is not available")
	assert.Contains(t, gen, "libtorch 1.13.1")

	lib := readFile(t, dest, "libtch/lib.go")
	assert.Contains(t, lib, "-L/opt/libtorch/lib -Wl,-rpath,/opt/libtorch/lib")
	assert.Contains(t, lib, "-D_GLIBCXX_USE_CXX11_ABI=1")
	assert.Contains(t, lib, "-std=c++17 ")
	assert.NotContains(t, lib, "torch_cuda")

	m, err := ReadManifest(dest)
	require.NoError(t, err)
	assert.Equal(t, res.Manifest, m)
	assert.Contains(t, readFile(t, dest, "libtch/repro_manifest.go"), `"atg__to_cpu"`)

	// Pristine files are kept untouched; the examples and generator are not copied.
	assert.Equal(t, sampleGenerated, readFile(t, dest, PristineDir+"/libtch/"+GeneratedFile))
	assert.NoDirExists(t, filepath.Join(dest, "example"))
	assert.NoDirExists(t, filepath.Join(dest, PristineDir, "gen"))
}

func TestPrepareAgainChangesNothing(t *testing.T) {
	src := fakeModule(t)
	dest := filepath.Join(t.TempDir(), "gotch")
	check, calls := fakeChecker("_dimI")
	_, err := Prepare(Options{Dest: dest, Source: src, Libtorch: testLibtorch("1.13.1"), Check: check})
	require.NoError(t, err)

	before := snapshot(t, dest)
	time.Sleep(10 * time.Millisecond) // so a rewrite would show in the mtimes
	n := *calls
	res, err := Prepare(Options{Dest: dest, Libtorch: testLibtorch("1.13.1"), Check: check})
	require.NoError(t, err)
	assert.True(t, res.Unchanged)
	assert.Equal(t, n, *calls, "no compiler run when nothing changed")
	assert.Equal(t, before, snapshot(t, dest), "no file rewritten")
}

func TestPrepareForAnotherLibtorchStartsFromPristine(t *testing.T) {
	src := fakeModule(t)
	dest := filepath.Join(t.TempDir(), "gotch")
	check1, _ := fakeChecker("_dimI", "_to_cpu")
	_, err := Prepare(Options{Dest: dest, Source: src, Libtorch: testLibtorch("1.13.1"), Check: check1})
	require.NoError(t, err)
	os.WriteFile(filepath.Join(dest, "stray.txt"), []byte("left by hand"), 0o644)

	// No Source: the module cache is not needed once pristine files exist.
	lt := testLibtorch("2.11.0+cu130")
	lt.CUDA = true
	check2, _ := fakeChecker("abs")
	res, err := Prepare(Options{Dest: dest, Libtorch: lt, Check: check2})
	require.NoError(t, err)
	assert.Equal(t, []string{"atg_abs"}, res.Manifest.Stubbed, "stubs of the earlier preparation do not carry over")
	assert.Equal(t, "cuda", res.Manifest.Device)
	gen := readFile(t, dest, "libtch/"+GeneratedFile)
	assert.Contains(t, gen, "self->_dimI()")
	assert.Contains(t, gen, "libtorch 2.11.0+cu130")
	assert.Contains(t, readFile(t, dest, "libtch/lib.go"), "-Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -ltorch_cuda -lc10_cuda")
	assert.NoFileExists(t, filepath.Join(dest, "stray.txt"))
}

func TestPrepareRefusesErrorsOutsideWrappers(t *testing.T) {
	src := fakeModule(t)
	dest := filepath.Join(t.TempDir(), "gotch")
	broken := func(string, *Libtorch) (string, bool, error) {
		return "torch_api.cpp:12:3: error: 'at::autocast' has not been declared\n", false, nil
	}
	_, err := Prepare(Options{Dest: dest, Source: src, Libtorch: testLibtorch("9.9.9"), Check: broken})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not only in generated wrappers")
	assert.Contains(t, err.Error(), "at::autocast")
	assert.NoFileExists(t, filepath.Join(dest, ManifestFile), "a failed preparation leaves no manifest")
}

func TestPrepareNeedsASource(t *testing.T) {
	_, err := Prepare(Options{Dest: filepath.Join(t.TempDir(), "gotch"), Libtorch: testLibtorch("1.13.1")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no pristine gotch files")
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	return string(b)
}

// snapshot maps each file under dir to its size, mtime and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%d %d %x", info.Size(), info.ModTime().UnixNano(), b)
		return nil
	}))
	return out
}
