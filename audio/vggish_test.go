package audio

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
	"github.com/reprolab/repro/internal/testutil/parity"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The fixture comes from testdata/gen_vggish_parity.py, which RUNS the
// official torchvggish code (harritaylor/torchvggish at f3f9096:
// mel_features.py, vggish_input.py, vggish.py) on Debian's torch 1.13 and
// numpy, with stubs for the resampy and soundfile imports (never called)
// and vggish.py's nn narrowed (conv widths / 16, MLP hidden 16; see the
// script) so that the weights fit in a small file.

const (
	vggishMelTol   = 1e-6 // numpy float64 vs Go float64, stored as float32
	vggishModelTol = 1e-5 // libtorch float32, relative to the tensor's scale
)

func vggishParityConfig() VGGishConfig {
	return VGGishConfig{Widths: []int64{4, 8, 16, 16, 32, 32}, Hidden: 16}
}

// vggishParityAudio is the fixture's int16 PCM as wavfile_to_examples
// reads it (samples / 32768), exact in float32.
func vggishParityAudio(x parity.Fixture) *Audio {
	pcm := x.Floats("in.pcm")
	a := NewAudio(VGGishSampleRate, 1, len(pcm))
	for i, v := range pcm {
		a.Channels[0][i] = float32(v / 32768)
	}
	return a
}

// vggishClose is testutil.CloseToScale (no scale floor: log-mel features
// and embeddings are compared relative to their own magnitude), logging the
// worst difference so a parity run shows its margin.
func vggishClose(t *testing.T, want, got []float64, tol float64, msg string) {
	t.Helper()
	t.Logf("%s: worst difference %.3g of the scale", msg, testutil.CloseToScale(t, want, got, tol, msg))
}

func TestVGGishMelMatrix(t *testing.T) {
	x := parity.Read(t, "testdata/vggish_parity.safetensors")
	want := x.Floats("out.mel_matrix_col") // [257, 3]: bands 0, 31, 63
	m := VGGishMelMatrix()
	require.Len(t, m, 257)
	var got []float64
	for k := range m {
		require.Len(t, m[k], VGGishMelBands)
		got = append(got, m[k][0], m[k][31], m[k][63])
	}
	vggishClose(t, want, got, 1e-12, "mel matrix")
	// HTK's mel (1000 Hz is about 1000 mel), not the Slaney scale of
	// HzToMel (1000 Hz is 15 mel).
	assert.InDelta(t, 1127*math.Log(1+1000.0/700), vggishHzToMel(1000), 1e-12)
	assert.InDelta(t, 1000, vggishHzToMel(1000), 0.1)
}

func TestVGGishLogMelAndExamples(t *testing.T) {
	x := parity.Read(t, "testdata/vggish_parity.safetensors")
	a := vggishParityAudio(x)
	w := make([]float64, a.Len())
	for i, v := range a.Channels[0] {
		w[i] = float64(v)
	}
	logMel := VGGishLogMel(w)
	require.Len(t, logMel, 198)
	vggishClose(t, x.Floats("out.log_mel"), testutil.Flatten(logMel), vggishMelTol, "log mel")

	ex, err := VGGishExamples(a)
	require.NoError(t, err)
	require.Len(t, ex, 2)
	var got []float64
	for _, e := range ex {
		require.Len(t, e, VGGishExampleFrames)
		got = append(got, testutil.Flatten(e)...)
	}
	vggishClose(t, x.Floats("out.examples"), got, vggishMelTol, "examples")

	// Stereo of two equal channels is the mono signal (np.mean).
	st := &Audio{SampleRate: a.SampleRate, Channels: [][]float32{a.Channels[0], a.Channels[0]}}
	ex2, err := VGGishExamples(st)
	require.NoError(t, err)
	assert.Equal(t, ex, ex2)
}

func TestVGGishShortAndResampled(t *testing.T) {
	// Under 0.975 s (96 frames need 400 + 95*160 samples) there is no example.
	ex, err := VGGishExamples(NewAudio(VGGishSampleRate, 1, VGGishWindow+95*VGGishHop-1))
	require.NoError(t, err)
	assert.Empty(t, ex)
	ex, err = VGGishExamples(NewAudio(VGGishSampleRate, 1, VGGishWindow+95*VGGishHop))
	require.NoError(t, err)
	assert.Len(t, ex, 1)
	assert.Empty(t, VGGishLogMel(make([]float64, VGGishWindow-1)))
	// 44.1 kHz is resampled: 2 s give 2 examples as at 16 kHz.
	ex, err = VGGishExamples(NewAudio(44100, 2, 88200))
	require.NoError(t, err)
	assert.Len(t, ex, 2)
	_, err = VGGishExamples(&Audio{SampleRate: 16000})
	assert.Error(t, err)
}

// loadParityVGGish builds the fixture's narrow model and loads the
// official weights strictly by their state-dict names.
func loadParityVGGish(t *testing.T, x parity.Fixture) *VGGish {
	store := torchmods.NewStore(gotch.CPU)
	m, err := NewVGGish(store.Root(), vggishParityConfig())
	require.NoError(t, err)
	rep, err := m.LoadStateDict(x.StateDict("w."))
	require.NoError(t, err)
	require.Len(t, rep.Loaded, len(store.Params()))
	return m
}

func TestVGGishParity(t *testing.T) {
	x := parity.Read(t, "testdata/vggish_parity.safetensors")
	m := loadParityVGGish(t, x)
	a := vggishParityAudio(x)

	// The whole pipeline, audio to embeddings, for each output.
	for _, c := range []struct {
		name string
		o    EmbedOptions
		want string
	}{
		{"relu (VGG.forward)", EmbedOptions{FinalReLU: true}, "out.embedding"},
		{"no final relu (FAD)", EmbedOptions{}, "out.embedding_noact"},
		{"pca (postprocess)", EmbedOptions{FinalReLU: true, PCA: true}, "out.embedding_pca"},
		{"batch 1", EmbedOptions{FinalReLU: true, Batch: 1}, "out.embedding"},
	} {
		got, err := m.EmbeddingsWith(a, c.o)
		require.NoError(t, err, c.name)
		require.Len(t, got, 2, c.name)
		for _, r := range got {
			require.Len(t, r, VGGishEmbeddingSize)
		}
		if c.o.PCA {
			// Quantised: the generator checked that every value is 3e-3
			// from a rounding boundary, so they must agree exactly.
			assert.Equal(t, x.Floats(c.want), testutil.Flatten(got), c.name)
			continue
		}
		vggishClose(t, x.Floats(c.want), testutil.Flatten(got), vggishModelTol, c.name)
	}
	def, err := m.Embeddings(a)
	require.NoError(t, err)
	vggishClose(t, x.Floats("out.embedding_noact"), testutil.Flatten(def), vggishModelTol, "Embeddings")

	// The network alone, on the official examples tensor.
	s := ts.NewScope()
	defer s.Close()
	var y *ts.Tensor
	ts.NoGrad(func() { y = m.Forward(x.Tensor("out.examples")) })
	assert.Equal(t, []int64{2, 128}, y.MustSize())
	vggishClose(t, x.Floats("out.embedding"), y.MustTotype(gotch.Double, false).Float64Values(), vggishModelTol, "Forward")
}

// TestVGGishOfficialNames checks that the full-size model has exactly the
// state-dict names and shapes of torchvggish's VGGish (written by the
// generator from the official module), so the released files load by name.
func TestVGGishOfficialNames(t *testing.T) {
	x := parity.Read(t, "testdata/vggish_parity.safetensors")
	var want map[string][]int64
	require.NoError(t, json.Unmarshal([]byte(x.Metadata["full_state_dict"]), &want))
	require.Len(t, want, 20)

	store := torchmods.NewStore(gotch.CPU)
	defer store.Drop()
	m, err := NewVGGish(store.Root(), VGGishConfig{})
	require.NoError(t, err)
	got := map[string][]int64{}
	n := int64(0)
	for _, p := range store.Params() {
		got[p.Name] = p.Tensor.MustSize()
		n += int64(p.Tensor.Numel())
	}
	assert.Equal(t, want, got)
	t.Logf("full-size VGGish: %d parameters", n)

	// One example through the full-size network.
	s := ts.NewScope()
	defer s.Close()
	var y *ts.Tensor
	ts.NoGrad(func() { y = m.Forward(ts.MustRandn([]int64{1, 1, 96, 64}, gotch.Float, gotch.CPU)) })
	assert.Equal(t, []int64{1, 128}, y.MustSize())
}

// TestVGGishLoadFiles loads the fixture's weights from files laid out as
// torchvggish's two releases (VGG's state_dict; the PCA file's bare
// pca_eigen_vectors and a [128] pca_means), and checks the refusals.
func TestVGGishLoadFiles(t *testing.T) {
	x := parity.Read(t, "testdata/vggish_parity.safetensors")
	var model, pca []safetensors.Tensor
	for _, st := range x.StateDict("w.") {
		switch st.Name {
		case "pproc.pca_eigen_vectors":
			st.Name = "pca_eigen_vectors"
			pca = append(pca, st)
		case "pproc.pca_means":
			st.Name, st.Shape = "pca_means", []int64{128}
			pca = append(pca, st)
		default:
			model = append(model, st)
		}
	}
	store := torchmods.NewStore(gotch.CPU)
	m, err := NewVGGish(store.Root().Sub("vggish"), vggishParityConfig())
	require.NoError(t, err)
	_, err = m.LoadStateDict(append(slices.Clone(model), pca...))
	require.NoError(t, err)
	got, err := m.EmbeddingsWith(vggishParityAudio(x), EmbedOptions{FinalReLU: true, PCA: true})
	require.NoError(t, err)
	assert.Equal(t, x.Floats("out.embedding_pca"), testutil.Flatten(got))

	// Strict: a missing tensor or a foreign one refuses the load.
	_, err = m.LoadStateDict(model)
	assert.ErrorContains(t, err, "missing")
	_, err = m.LoadStateDict(append(slices.Clone(model), append(pca, safetensors.Tensor{Name: "extra", DType: "F32", Shape: []int64{1}, Data: make([]byte, 4)})...))
	assert.ErrorContains(t, err, "unexpected")
	noPCA, err := NewVGGish(torchmods.NewStore(gotch.CPU).Root(), VGGishConfig{Widths: vggishParityConfig().Widths, Hidden: 16, NoPCA: true})
	require.NoError(t, err)
	_, err = noPCA.LoadStateDict(model)
	require.NoError(t, err)
	_, err = noPCA.EmbeddingsWith(vggishParityAudio(x), EmbedOptions{PCA: true})
	assert.Error(t, err)

	// LoadVGGish on files it cannot read names the way out; the narrow
	// fixture weights load with their sizes read from their shapes.
	dir := t.TempDir()
	legacy := filepath.Join(dir, "vggish-10086976.pth")
	require.NoError(t, os.WriteFile(legacy, []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20}, 0o644))
	_, err = LoadVGGish(legacy, "", gotch.CPU)
	assert.ErrorContains(t, err, "re-save it once")
	_, err = LoadVGGish(filepath.Join(dir, "absent.pth"), "", gotch.CPU)
	assert.Error(t, err)
	narrow, pcaFile := filepath.Join(dir, "narrow.safetensors"), filepath.Join(dir, "pca.safetensors")
	require.NoError(t, safetensors.Write(narrow, model, nil))
	require.NoError(t, safetensors.Write(pcaFile, pca, nil))
	loaded, err := LoadVGGish(narrow, pcaFile, gotch.CPU)
	require.NoError(t, err)
	assert.Equal(t, vggishParityConfig().Widths, loaded.Config.Widths)
	got, err = loaded.EmbeddingsWith(vggishParityAudio(x), EmbedOptions{FinalReLU: true, PCA: true})
	require.NoError(t, err)
	assert.Equal(t, x.Floats("out.embedding_pca"), testutil.Flatten(got))
}
