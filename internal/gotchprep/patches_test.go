package gotchprep

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplaceInsistsOnTheCount(t *testing.T) {
	out, err := replace("a", "b", 2)("a-a")
	require.NoError(t, err)
	assert.Equal(t, "b-b", out)
	_, err = replace("a", "b", 3)("a-a")
	assert.ErrorContains(t, err, "expected 3 occurrences")
	_, err = replace("zzz", "b", -1)("a-a")
	assert.ErrorContains(t, err, "found 0")
}

func TestRemoveFunc(t *testing.T) {
	src := "package x\n\n// f does f.\n// Really.\nfunc f() {\n\tif true {\n\t}\n}\n\nfunc g() {}\n"
	out, err := removeFunc("func f(")(src)
	require.NoError(t, err)
	assert.Equal(t, "package x\n\n\nfunc g() {}\n", out)
	_, err = removeFunc("func h(")(src)
	assert.ErrorContains(t, err, "not found")
}

// TestPatchesApplyToGotch applies the real patch set to gotch v0.9.1's
// pristine files, which every prepared checkout keeps: a patch whose text
// no longer matches fails here, not in a user's install.
func TestPatchesApplyToGotch(t *testing.T) {
	pristine, err := filepath.Abs("../../third_party/gotch/" + PristineDir)
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(pristine, "go.mod")); err != nil {
		t.Skip("no prepared gotch copy; run scripts/install_libtorch.sh")
	}
	dir := t.TempDir()
	require.NoError(t, copyTree(pristine, dir, nil))
	require.NoError(t, applyPatches(dir, Patches))

	lifetime := readFile(t, dir, "ts/repro_lifetime.go")
	assert.Contains(t, lifetime, "func NewScope() *Scope")
	tensor := readFile(t, dir, "ts/tensor.go")
	assert.NotContains(t, tensor, "bigStruct")
	assert.NotContains(t, tensor, "func newTensor(")
	assert.Contains(t, tensor, "scope      *Scope")
	gen := readFile(t, dir, "ts/tensor-generated.go")
	assert.NotContains(t, gen, "C.malloc(0)")
	assert.Equal(t, 260, strings.Count(gen, "lib.AtFree(ts.ctensor)\n  ts.ctensor = *ptr"))
	assert.Contains(t, readFile(t, dir, "libtch/torch_api.cpp"), `extern "C" int64_t at_repro_nbytes`)
	assert.Contains(t, gen, "    lib.AtgMulScalar(ptr, ts.ctensor, other.cscalar)\n  runtime.KeepAlive(ts)\n  runtime.KeepAlive(other)\n  if err = TorchErr()")
	assert.Contains(t, gen, "  lib.AtgCat(ptr, ctensors, len(ctensors), dim)\n  runtime.KeepAlive(tensors)\n")
	assert.Contains(t, lifetime, "static __thread uintptr_t repro_scope;", "scopes are found through a thread-local variable")
	assert.NotContains(t, lifetime, "Gettid", "not through thread ids, which the kernel reuses")

	// Applying twice fails loudly rather than patching a patched file.
	assert.Error(t, applyPatches(dir, Patches))
}

func TestPatchesDigestFollowsThePatchSet(t *testing.T) {
	assert.Equal(t, "none", patchesDigest(nil))
	all := patchesDigest(Patches)
	assert.NotEqual(t, all, patchesDigest(Patches[:1]))
	assert.Equal(t, all, patchesDigest(Patches))
}

func TestKeepOpArgsAlive(t *testing.T) {
	src := "func(ts *Tensor) Add(other *Tensor, alpha *Scalar)(retVal *Tensor, err error) { \n" +
		"  ptr := outBuf()\n" +
		"    lib.AtgAdd(ptr, ts.ctensor, other.ctensor, alpha.cscalar, ts.ctensor)\n" +
		"  if err = TorchErr(); err != nil {\n" +
		"}\n" +
		"func Stack(tensors []*Tensor, dim int64)(retVal *Tensor, err error) { \n" +
		"  var ctensors []lib.Ctensor\n" +
		"  for _, t := range tensors {ctensors = append(ctensors, t.ctensor)}\n" +
		"  lib.AtgStack(ptr, ctensors, len(ctensors), dim)\n" +
		"}\n" +
		"func Other(ctensors int64) {\n" +
		"  lib.AtgOther(ptr, ctensors)\n" +
		"}\n"
	out, err := keepOpArgsAlive(3)(src)
	require.NoError(t, err)
	assert.Contains(t, out, "alpha.cscalar, ts.ctensor)\n  runtime.KeepAlive(ts)\n  runtime.KeepAlive(other)\n  runtime.KeepAlive(alpha)\n  if err")
	assert.Contains(t, out, "lib.AtgStack(ptr, ctensors, len(ctensors), dim)\n  runtime.KeepAlive(tensors)\n}")
	assert.Contains(t, out, "lib.AtgOther(ptr, ctensors)\n}", "a flattened list belongs to its own function")
	_, err = keepOpArgsAlive(4)(src)
	assert.ErrorContains(t, err, "expected 4 op calls, found 3")
}
