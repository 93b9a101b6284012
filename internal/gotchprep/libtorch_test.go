package gotchprep

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// systemC10 is Debian's libc10.so, which the install script puts on every
// machine that runs the tests; it is a real ELF built with the C++11 ABI.
const systemC10 = "/usr/lib/x86_64-linux-gnu/libc10.so"

func fakeLibtorchDir(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := os.Stat(systemC10); err != nil {
		t.Skipf("%s not installed (scripts/install_libtorch.sh installs it)", systemC10)
	}
	dir := t.TempDir()
	for _, name := range []string{"include/torch/csrc/api/include/torch/torch.h", "lib/libtorch.so", "lib/libtorch_cpu.so"} {
		files[name] = ""
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	require.NoError(t, os.Symlink(systemC10, filepath.Join(dir, "lib", "libc10.so")))
	return dir
}

func TestDetectDirPyTorchFolder(t *testing.T) {
	dir := fakeLibtorchDir(t, map[string]string{
		"version.py":            "__version__ = '2.11.0+cu130'\ndebug = False\n",
		"lib/libtorch_cuda.so":  "",
		"lib/libc10_cuda.so":    "",
		"include/ATen/ATen.h":   "",
		"include/c10/macros.h":  "",
		"include/torch/extra.h": "",
	})
	lt, err := DetectDir(dir)
	require.NoError(t, err)
	assert.Equal(t, "2.11.0+cu130", lt.Version)
	assert.Equal(t, "version.py", lt.VersionSource)
	assert.True(t, lt.CUDA, "libtorch_cuda.so in lib/ means CUDA")
	assert.Equal(t, 1, lt.CXX11ABI)
	assert.Equal(t, []string{filepath.Join(dir, "include"), filepath.Join(dir, "include/torch/csrc/api/include")}, lt.IncludeDirs)
	assert.Equal(t, filepath.Join(dir, "lib"), lt.LibDir)
}

func TestDetectDirZipAndHeader(t *testing.T) {
	lt, err := DetectDir(fakeLibtorchDir(t, map[string]string{"build-version": "2.1.0+cpu\n"}))
	require.NoError(t, err)
	assert.Equal(t, "2.1.0+cpu", lt.Version)
	assert.False(t, lt.CUDA)

	lt, err = DetectDir(fakeLibtorchDir(t, map[string]string{"include/torch/csrc/api/include/torch/version.h": "#define TORCH_VERSION_MAJOR 1\n#define TORCH_VERSION_MINOR 13\n#define TORCH_VERSION_PATCH 0\n"}))
	require.NoError(t, err)
	assert.Equal(t, "1.13.0", lt.Version)
	assert.Equal(t, "torch/version.h", lt.VersionSource)
}

func TestRequiredStd(t *testing.T) {
	dir := t.TempDir()
	assert.Equal(t, "c++17", requiredStd(dir), "no header: gotch's own minimum")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "torch"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "torch/torch.h"), []byte("#if !defined(_MSC_VER) && __cplusplus < 201402L\n#error C++14\n#endif\n"), 0o644))
	assert.Equal(t, "c++17", requiredStd(dir), "C++14 headers still get gotch's C++17")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "torch/all.h"), []byte("#if !defined(_MSC_VER) && __cplusplus < 202002L\n#error C++20\n#endif\n"), 0o644))
	assert.Equal(t, "c++20", requiredStd(dir))
}

func TestDetectDirErrorsNameWhatIsMissing(t *testing.T) {
	_, err := DetectDir(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "include")

	dir := fakeLibtorchDir(t, map[string]string{"build-version": "2.1.0"})
	require.NoError(t, os.Remove(filepath.Join(dir, "lib", "libtorch_cpu.so")))
	_, err = DetectDir(dir)
	assert.ErrorContains(t, err, "libtorch_cpu.so not found")
}

func TestDetectCXX11ABIOnANonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "libc10.so")
	require.NoError(t, os.WriteFile(p, []byte("not an ELF"), 0o644))
	_, err := DetectCXX11ABI(p)
	assert.ErrorContains(t, err, p)
}

func TestDebianUpstreamVersion(t *testing.T) {
	for in, want := range map[string]string{
		"1.13.1+dfsg-4":   "1.13.1",
		"1:2.1.2+dfsg-1~": "2.1.2",
		"2.0.0-1":         "2.0.0",
	} {
		assert.Equal(t, want, debianUpstreamVersion(in), in)
	}
}
