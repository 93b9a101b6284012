"""Makes vggish_parity.safetensors, the PyTorch/numpy reference for audio/vggish.go.

Run from the repository root with Debian's python3 (torch 1.13.1, numpy), after checking out the
official code at the pinned commit:
    git clone https://github.com/harritaylor/torchvggish /tmp/torchvggish-git
    mkdir -p /tmp/torchvggish && git -C /tmp/torchvggish-git archive f3f90969ce8fb77a05d984b892ddf662e8466377 | tar -x -C /tmp/torchvggish
    /usr/bin/python3 audio/testdata/gen_vggish_parity.py /tmp/torchvggish

This RUNS the official code of github.com/harritaylor/torchvggish at commit
f3f90969ce8fb77a05d984b892ddf662e8466377 (HEAD, 2021-11-03; torchvggish/ last changed in f70241b,
2020-09-14), imported from the checkout given as the argument (nothing of it is copied here):
  torchvggish/vggish.py        VGG, make_layers, Postprocessor, VGGish (forward, _preprocess, _postprocess);
  torchvggish/vggish_input.py  waveform_to_examples;
  torchvggish/mel_features.py  log_mel_spectrogram (frame, periodic_hann, stft_magnitude, hertz_to_mel,
                               spectrogram_to_mel_matrix);
  torchvggish/vggish_params.py the constants.

---- Stubs (none computes a number used here):
  resampy: imported by vggish_input.py, called only when the rate is not 16 kHz; the input here is
    16 kHz, so the stub's resample raises if called. Debian has no resampy.
  soundfile: imported by vggish_input.py for wavfile_to_examples, which is not called (the PCM below is
    passed as samples/32768, exactly what wavfile_to_examples does after sf.read(dtype='int16')); the
    stub's read raises. Debian has no soundfile.
  Nothing of torch.hub is stubbed: VGGish is built with pretrained=False, so hub is never called.

---- Reduced widths. The released model has ~72M parameters (the 4096-wide MLP) and its conv stack
alone 4.7M, far too much for a fixture. The official classes are still what runs: the generator
replaces the name `nn` in vggish.py's globals by a copy of torch.nn whose Conv2d and Linear narrow
their widths, so that make_layers, VGG.__init__/forward, Postprocessor and VGGish.forward execute
unchanged:
  Conv2d widths 64, 128, 256, 256, 512, 512 -> 4, 8, 16, 16, 32, 32 (divided by 16; input 1 channel);
  Linear 512*4*6 -> 4096 -> 4096 -> 128  becomes  32*4*6 -> 16 -> 16 -> 128 (embedding size kept, so
  the Postprocessor's 128x128 PCA is the real shape).
The Go side builds the same model through VGGishConfig{Widths, Hidden}. The full-size model is built
too (without the shim, pretrained=False) and its state-dict names and shapes are written to the
metadata ("full_state_dict"), so that the Go test checks the released files' names load by name.

float32 model, eval mode, torch.manual_seed(0). Weights: PyTorch's default init, every conv/linear
weight then scaled by sqrt(6) (He's gain for ReLU nets, so that activations neither vanish nor blow up
through nine layers) and biases set to 0.1*randn. PCA: pca_means = mean raw embedding + 0.1*randn,
pca_eigen_vectors = randn scaled so that the PCA output has std 1.5 (so clipping at +-2 happens on both
sides and the quantiser's middle is used). The script checks that no quantiser input lies within 2e-3
of a rounding boundary (printed), so float32 rounding cannot flip a quantised value in the Go port.

Input: 2.0 s of 16 kHz int16 PCM (three partials, a chirp and noise), seeded numpy.

Tensors (F32 unless said):
  "w.<name>"             every parameter of the reduced VGGish, its state_dict names: features.{0,3,6,8,11,13}
                         .{weight,bias}, embeddings.{0,2,4}.{weight,bias}, pproc.pca_eigen_vectors [128,128],
                         pproc.pca_means [128,1].
  "in.pcm" [32000] I16   the input; the waveform is pcm/32768.0 (float64).
  "out.log_mel" [198,64] mel_features.log_mel_spectrogram(waveform, 16000, log_offset 0.01, 25 ms, 10 ms,
                         64 bins, 125-7500 Hz), as vggish_input calls it (numpy float64, stored F32).
  "out.mel_matrix_col"   [257,3] F64: columns 0, 31, 63 of spectrogram_to_mel_matrix(64, 257, 16000, 125, 7500).
  "out.examples" [2,1,96,64]  vggish_input.waveform_to_examples(waveform, 16000) (return_tensor=True).
  "out.embedding" [2,128]        VGGish(preprocess=True, postprocess=False)(waveform, 16000): VGG.forward,
                                 final ReLU included, as the file has it.
  "out.embedding_pca" [2,128]    the same with postprocess=True (Postprocessor: PCA, clip, 8-bit quantise).
  "out.embedding_noact" [2,128]  embeddings with its final ReLU removed, as frechet_audio_distance does
                                 for FAD (nn.Sequential(*list(model.embeddings.children())[:-1])).
"""
import json
import os
import sys
import types

import numpy as np
import torch

COMMIT = "f3f90969ce8fb77a05d984b892ddf662e8466377"
WIDTH_DIV = 16
HIDDEN = 16

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402  the fixture scripts' shared writer (Debian has no safetensors package)


def install_stubs():
    def _raise(*a, **k):
        raise RuntimeError("stub: not used by the fixture")
    resampy = types.ModuleType("resampy")
    resampy.resample = _raise
    sys.modules["resampy"] = resampy
    sf = types.ModuleType("soundfile")
    sf.read = _raise
    sys.modules["soundfile"] = sf


def narrow_nn():
    """A copy of torch.nn whose Conv2d and Linear narrow the widths (see the module doc)."""
    real = torch.nn
    shim = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})

    def conv2d(cin, cout, **kw):
        return real.Conv2d(cin if cin == 1 else cin // WIDTH_DIV, cout // WIDTH_DIV, **kw)

    lin_map = {512 * 4 * 6: (512 // WIDTH_DIV) * 4 * 6, 4096: HIDDEN, 128: 128}

    def linear(cin, cout, *a, **kw):
        return real.Linear(lin_map[cin], lin_map[cout], *a, **kw)

    shim.Conv2d = conv2d
    shim.Linear = linear
    return shim


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    install_stubs()
    sys.path.insert(0, sys.argv[1])
    from torchvggish import mel_features, vggish, vggish_input, vggish_params  # noqa: E402

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    # The full-size model's names and shapes, for the loader test.
    full = vggish.VGGish(urls={}, device="cpu", pretrained=False, postprocess=True)
    full_sd = {k: list(v.shape) for k, v in full.state_dict().items()}
    del full

    vggish.nn = narrow_nn()
    model = vggish.VGGish(urls={}, device="cpu", pretrained=False, postprocess=True).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.mul_(6 ** 0.5)
                m.bias.copy_(0.1 * torch.randn_like(m.bias))

    # Input: 2 s of int16 PCM.
    sr = vggish_params.SAMPLE_RATE
    t = np.arange(2 * sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1330 * t + 0.5)
         + 0.1 * np.sin(2 * np.pi * 4100 * t) + 0.15 * np.sin(2 * np.pi * (300 + 900 * t) * t)
         + 0.05 * rng.standard_normal(t.shape))
    pcm = np.clip(np.round(x * 32768 * 0.8), -32768, 32767).astype(np.int16)
    wave = pcm / 32768.0

    log_mel = mel_features.log_mel_spectrogram(
        wave, audio_sample_rate=sr, log_offset=vggish_params.LOG_OFFSET,
        window_length_secs=vggish_params.STFT_WINDOW_LENGTH_SECONDS,
        hop_length_secs=vggish_params.STFT_HOP_LENGTH_SECONDS,
        num_mel_bins=vggish_params.NUM_MEL_BINS, lower_edge_hertz=vggish_params.MEL_MIN_HZ,
        upper_edge_hertz=vggish_params.MEL_MAX_HZ)
    mel_matrix = mel_features.spectrogram_to_mel_matrix(
        num_mel_bins=64, num_spectrogram_bins=257, audio_sample_rate=sr,
        lower_edge_hertz=vggish_params.MEL_MIN_HZ, upper_edge_hertz=vggish_params.MEL_MAX_HZ)
    examples = vggish_input.waveform_to_examples(wave, sr).detach()
    print("log_mel", log_mel.shape, "range", log_mel.min(), log_mel.max(), "examples", tuple(examples.shape))

    with torch.no_grad():
        model.postprocess = False
        emb = model(wave, sr)
        # PCA parameters, scaled on the raw embedding (see the module doc).
        means = emb.mean(0) + 0.1 * torch.randn(128)
        eig = torch.randn(128, 128)
        pre = eig @ (emb.t() - means[:, None])
        eig *= 1.5 / pre.std()
        model.pproc.pca_means.copy_(means[:, None])
        model.pproc.pca_eigen_vectors.copy_(eig)
        model.postprocess = True
        emb_pca = model(wave, sr)
        model.postprocess = False
        relu = model.embeddings
        model.embeddings = torch.nn.Sequential(*list(relu.children())[:-1])
        emb_noact = model(wave, sr)
        model.embeddings = relu

    print("embedding", tuple(emb.shape), "range", emb.min().item(), emb.max().item(),
          "zeros", (emb == 0).sum().item(), "noact range", emb_noact.min().item(), emb_noact.max().item())
    # Margin of the quantiser input from a rounding boundary.
    pre = (model.pproc.pca_eigen_vectors.double() @ (emb.double().t() - model.pproc.pca_means.double())).t()
    inside = (pre > -2) & (pre < 2)
    q = (pre[inside] + 2) * (255.0 / 4.0)
    margin = (q - q.floor() - 0.5).abs().min().item()
    print("pca: clipped low", (pre <= -2).sum().item(), "high", (pre >= 2).sum().item(),
          "inside", inside.sum().item(), "min distance to a rounding boundary", margin)
    assert margin > 2e-3, margin

    tensors = {"w." + k: v for k, v in model.state_dict().items()}
    tensors.update({
        "in.pcm": torch.from_numpy(pcm.copy()),
        "out.log_mel": torch.from_numpy(log_mel).float(),
        "out.mel_matrix_col": torch.from_numpy(mel_matrix[:, [0, 31, 63]].copy()),
        "out.examples": examples.float(),
        "out.embedding": emb,
        "out.embedding_pca": emb_pca,
        "out.embedding_noact": emb_noact,
    })
    meta = {"commit": COMMIT, "width_div": str(WIDTH_DIV), "hidden": str(HIDDEN),
            "full_state_dict": json.dumps(full_sd)}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vggish_parity.safetensors")
    n, size = st_write.write(out, tensors, meta)
    print("wrote", n, "tensors,", size, "bytes of data to", out)


if __name__ == "__main__":
    main()
