"""Makes the fixtures of torchmods' CLIP image preprocessing (clip_preprocess.go) with OpenAI's own
clip._transform, on PIL and torchvision.

The official code is not part of this repository. Export clip/ of github.com/openai/CLIP at commit
d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 (clip.py is git blob 398a6282cc243e449430d91c2562491fc799929d,
checked below) and pass the directory; run with Debian 12's /usr/bin/python3 and its python3-pil (Pillow
9.4.0), python3-torch, python3-torchvision (0.14.1), python3-regex, python3-packaging and python3-tqdm:

    d=$(mktemp -d)
    git -C /path/to/CLIP archive d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 clip | tar -x -C "$d"
    /usr/bin/python3 torchmods/testdata/gen_clip_preprocess.py "$d/clip"

clip/__init__.py imports simple_tokenizer.py, which imports ftfy, not a Debian package: a stub module stands
in for it (the tokenizer is not used here).

Images (numpy seed 0), each written as clip_preprocess/NAME.png by PIL and read back with Image.open, as
a user's file is, then given to clip._transform(n):
  rgb_down   RGB 97x61 noise, n 32: downscaled, PIL's antialiased bicubic
  rgb_up     RGB 13x20 noise, n 32: upscaled
  rgb_same   RGB 32x48 noise, n 32: the short side is n already (no resize), a vertical crop
  rgb_round  RGB 45x101 noise, n 33: 33x74 after resizing, the crop offset 20.5 rounded half to even
  rgb_wide   RGB 120x7 noise, n 16
  rgb_line   RGB 1x50 noise, n 8: 8x400 after resizing
  gradient   RGB 300x200 smooth gradients with noise, n 224, CLIP's resolution
  rgba       RGBA 40x30 noise, alpha 0, 255 and between: PIL resizes RGBA premultiplied
  la         LA 30x30, n 20: premultiplied too
  gray       L 50x40, n 24
  palette    P 37x23 (a 16-colour palette), n 16: PIL resizes palette images with NEAREST
  jpeg420, jpeg422, jpeg444
             RGB 97x61 gradients with noise, n 32, saved as JPEG (quality 90) with 4:2:0, 4:2:2 and 4:4:4
             chroma subsampling; Go decodes JPEGs with its own IDCT, so these pixels are close, not equal;
             "decoded.NAME", uint8 [61, 97, 3], is PIL's decoding (libjpeg-turbo) before any transform
Stored in clip_preprocess.safetensors: "pixels.NAME", uint8 [n, n, 3], the image after Resize, CenterCrop
and convert("RGB"); "tensor.NAME", float32 [3, n, n], the whole transform's output, for every image but
gradient (its pixels suffice, with the normalisation checked on the others).
"""
import hashlib
import os
import sys
import types

import numpy as np
import torch
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import st_write  # noqa: E402

COMMIT = "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"
BLOB = "398a6282cc243e449430d91c2562491fc799929d"


def load_clip(d):
    src = open(os.path.join(d, "clip.py"), "rb").read()
    blob = hashlib.sha1(b"blob %d\0" % len(src) + src).hexdigest()
    if blob != BLOB:
        sys.exit(f"{d}/clip.py is git blob {blob}, not clip/clip.py at {COMMIT}")
    try:
        import ftfy  # noqa: F401
    except ImportError:
        stub = types.ModuleType("ftfy")
        stub.fix_text = lambda t, *a, **k: t
        sys.modules["ftfy"] = stub
    sys.path.insert(0, os.path.dirname(os.path.abspath(d)))
    from clip import clip

    return clip


def images():
    rng = np.random.RandomState(0)

    def noise(h, w, c):
        return rng.randint(0, 256, size=(h, w, c), dtype=np.uint8)

    out = {
        "rgb_down": (Image.fromarray(noise(61, 97, 3), "RGB"), 32),
        "rgb_up": (Image.fromarray(noise(20, 13, 3), "RGB"), 32),
        "rgb_same": (Image.fromarray(noise(48, 32, 3), "RGB"), 32),
        "rgb_round": (Image.fromarray(noise(101, 45, 3), "RGB"), 33),
        "rgb_wide": (Image.fromarray(noise(7, 120, 3), "RGB"), 16),
        "rgb_line": (Image.fromarray(noise(50, 1, 3), "RGB"), 8),
    }
    y, x = np.mgrid[0:200, 0:300]
    g = np.stack([x * 255 / 299, y * 255 / 199, (x + y) * 255 / 498], -1) + rng.normal(0, 8, (200, 300, 3))
    out["gradient"] = (Image.fromarray(np.clip(g, 0, 255).astype(np.uint8), "RGB"), 224)
    rgba = noise(30, 40, 4)
    rgba[:, :8, 3] = 0
    rgba[:, 8:16, 3] = 255
    out["rgba"] = (Image.fromarray(rgba, "RGBA"), 24)
    out["la"] = (Image.fromarray(noise(30, 30, 2), "LA"), 20)
    out["gray"] = (Image.fromarray(noise(40, 50, 1)[:, :, 0], "L"), 24)
    p = Image.fromarray(rng.randint(0, 16, size=(23, 37), dtype=np.uint8), "P")
    p.putpalette(list(noise(1, 16, 3).reshape(-1)) + [0] * (768 - 48))
    out["palette"] = (p, 16)
    y, x = np.mgrid[0:61, 0:97]
    g = np.stack([x * 255 / 96, y * 255 / 60, (x + y) * 255 / 156], -1) + rng.normal(0, 20, (61, 97, 3))
    g = Image.fromarray(np.clip(g, 0, 255).astype(np.uint8), "RGB")
    for name, sub in (("jpeg420", 2), ("jpeg422", 1), ("jpeg444", 0)):
        out[name] = (g, 32, dict(format="JPEG", quality=90, subsampling=sub))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    clip = load_clip(sys.argv[1])
    from torchvision.transforms import CenterCrop, Compose, Resize

    os.makedirs(os.path.join(here, "clip_preprocess"), exist_ok=True)
    tensors = {}
    for name, (img, n, *save) in images().items():
        kw = save[0] if save else {}
        path = os.path.join(here, "clip_preprocess", name + (".jpg" if kw else ".png"))
        img.save(path, **kw)
        img = Image.open(path)
        if kw:
            tensors["decoded." + name] = torch.from_numpy(np.array(img.convert("RGB")).copy())
        t = clip._transform(n)
        # The same steps up to the tensor: Resize, CenterCrop, convert("RGB").
        geo = Compose([Resize(n, interpolation=clip.BICUBIC), CenterCrop(n)])
        px = np.array(geo(img).convert("RGB"))
        assert px.shape == (n, n, 3), (name, px.shape)
        tensors["pixels." + name] = torch.from_numpy(px.copy())
        if name != "gradient" and not kw:
            tensors["tensor." + name] = t(img).float()
        print(name, img.mode, img.size, "->", n)
    st_write.write(os.path.join(here, "clip_preprocess.safetensors"), tensors,
                   {"source": f"github.com/openai/CLIP {COMMIT} clip._transform, Pillow 9.4.0, torchvision 0.14.1"})


if __name__ == "__main__":
    main()
