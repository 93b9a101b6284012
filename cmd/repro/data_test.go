package main

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDataCheckListsUnusableImages(t *testing.T) {
	dir := t.TempDir()
	for _, class := range []string{"cat", "dog"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, class), 0o755))
		f, err := os.Create(filepath.Join(dir, class, "ok.png"))
		require.NoError(t, err)
		require.NoError(t, png.Encode(f, image.NewGray(image.Rect(0, 0, 4, 4))))
		f.Close()
	}
	out, stderr, code := runRepro(t, "data", "check", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "2 images in 2 classes, all readable")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "dog", "broken.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644))
	out, stderr, code = runRepro(t, "data", "check", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "broken.png")
	assert.Contains(t, stderr, "1 of 1 folders have images that cannot be used")
}
