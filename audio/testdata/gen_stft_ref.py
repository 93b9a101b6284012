# Generates stft_ref.json: torch.stft magnitudes as audiotools'
# AudioSignal.stft computes them (periodic Hann window, center=True,
# reflect padding, onesided, return_complex), for audio/mel_test.go.
# Run with Debian's python3 (torch 1.13): /usr/bin/python3 gen_stft_ref.py
import json
import math

import torch

T, B = 300, 2
x = torch.tensor(
    [[math.sin(0.1 * i + b) + 0.3 * math.cos(0.37 * i ** 1.1) for i in range(T)] for b in range(B)],
    dtype=torch.float32,
)
out = {"x": x.flatten().tolist(), "shape": [B, 1, T], "torch": torch.__version__, "cases": []}
for w, hop in [(64, 16), (32, 8), (128, 32)]:
    window = torch.hann_window(w, periodic=True)
    s = torch.stft(x, n_fft=w, hop_length=hop, window=window, return_complex=True, center=True, pad_mode="reflect")
    mag = s.abs()
    out["cases"].append({"window": w, "hop": hop, "shape": list(mag.shape), "mag": mag.flatten().tolist()})
with open("stft_ref.json", "w") as f:
    json.dump(out, f)
