"""Writes albef_randaugment.json.gz (gzipped JSON), the references for data/albef_randaugment_test.go.

It runs the official RandomAugment of ALBEF and MUMC, dataset/randaugment.py
(pengfeiliHEU/MUMC commit 27b544d025901945006113012adfc7d755cd196e; the file is
git blob 094d9f4cacc93146d2bab7311d9dc04feb07032c, the same as
salesforce/ALBEF's), imported unchanged from a checkout given as the argument,
with real OpenCV and numpy. Run with /usr/bin/python3 (numpy 1.24, Pillow 9.4,
and OpenCV 4.6 from Debian bookworm's python3-opencv):

    git clone https://github.com/pengfeiliHEU/MUMC /tmp/mumc
    git -C /tmp/mumc checkout 27b544d025901945006113012adfc7d755cd196e
    /usr/bin/python3 data/testdata/gen_albef_randaugment.py /tmp/mumc

(the whole checkout works too; only dataset/randaugment.py is loaded, by path,
since dataset/__init__.py imports torch). The file's git blob hash is checked.

The ops draw random numbers only for the direction of the geometric ops
(np.random.random() inside the level-to-argument functions) and in
RandomAugment.__call__ (np.random.choice, np.random.random). To run them on
given draws, the module's global np is replaced by a stand-in whose random
attribute replays a script; everything else is numpy. Cases:

  ops:       func_dict[op](img, *arg_dict[op](level)) on three images, each op
             at several levels, the geometric ones in both directions;
  rotation:  cv2.getRotationMatrix2D((W/2, H/2), deg, 1) for the levels and
             sizes used, as float.hex, so the test can check Go's cos and sin
             give the same bits as the C library's;
  sequences: RandomAugment(N, M, isPIL=True, augs)(PIL image) on scripted
             np.random.choice indices and np.random.random draws.
"""
import base64
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import warnings

import cv2
import numpy as np
import PIL
from PIL import Image

MUMC_COMMIT = "27b544d025901945006113012adfc7d755cd196e"
BLOB = "094d9f4cacc93146d2bab7311d9dc04feb07032c"


def load(checkout):
    path = os.path.join(checkout, "dataset", "randaugment.py")
    with open(path, "rb") as f:
        src = f.read()
    blob = hashlib.sha1(b"blob %d\0" % len(src) + src).hexdigest()
    if blob != BLOB:
        sys.exit(f"{path}: git blob {blob}, not {BLOB} (MUMC {MUMC_COMMIT[:8]}'s dataset/randaugment.py)")
    spec = importlib.util.spec_from_file_location("albef_randaugment", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Script:
    """np.random's choice and random, replaying given values."""

    def __init__(self, choices=(), uniforms=()):
        self.choices, self.uniforms = list(choices), list(uniforms)

    def choice(self, a, size):
        idx = [self.choices.pop(0) for _ in range(size)]
        return np.array(a)[idx]

    def random(self):
        return self.uniforms.pop(0)

    def done(self):
        assert not self.choices and not self.uniforms, (self.choices, self.uniforms)


class NumpyWithScript:
    """numpy, but for its random attribute."""

    def __init__(self, script):
        self.random = script

    def __getattr__(self, name):
        return getattr(np, name)


def images():
    rs = np.random.RandomState(0)
    # 0: 16 x 12 noise; red reaches 0 (AutoContrast stretches it), green
    # starts at 30 and blue at 90 (AutoContrast's uint8 -low makes them 255).
    r = rs.randint(0, 201, (12, 16))
    r[5, 7] = 0
    a = np.stack([r, rs.randint(30, 221, (12, 16)), rs.randint(90, 251, (12, 16))], -1)
    # 1: 16 x 12 structure: red flat (AutoContrast leaves it), green 0/255
    # blocks (Sharpness overshoots and wraps), blue a ramp from 0.
    yy, xx = np.mgrid[0:12, 0:16]
    b = np.stack([np.full((12, 16), 77), np.where((xx // 3 + yy // 2) % 2 == 0, 10, 250), 5 * xx + 9 * yy], -1)
    # 2: 15 x 11 noise over the full range: odd sides, a half-pixel centre.
    c = rs.randint(0, 256, (11, 15, 3))
    return [x.astype(np.uint8) for x in (a, b, c)]


def b64(arr):
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.uint8).tobytes()).decode()


SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
LEVEL_FREE = {"Identity", "AutoContrast", "Equalize"}


def sign_draw(op, negate):
    """The np.random.random() value that makes op's level function negate or not."""
    if op == "Rotate":  # negates when random() < 0.5
        return 0.25 if negate else 0.75
    return 0.75 if negate else 0.25  # shear, translate: when random() > 0.5


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ra = load(sys.argv[1])
    warnings.simplefilter("ignore")  # numpy 1.24 warns about uint8 wrap-around, which the code relies on
    imgs = images()
    out = dict(mumc_commit=MUMC_COMMIT, blob=BLOB, numpy=np.__version__, opencv=cv2.__version__, pil=PIL.__version__,
               images=[dict(w=im.shape[1], h=im.shape[0], rgb=b64(im)) for im in imgs],
               ops=[], rotation=[], sequences=[])
    all_ops = list(ra.arg_dict.keys())
    levels = {0: (7, 10, 2.5, 5), 1: (7, 10), 2: (7, 3.3)}
    for k, img in enumerate(imgs):
        for op in all_ops:
            for level in ((7,) if op in LEVEL_FREE else levels[k]):
                for neg in ((False, True) if op in SIGNED else (False,)):
                    script = Script(uniforms=[sign_draw(op, neg)] if op in SIGNED else [])
                    ra.np = NumpyWithScript(script)
                    try:
                        args = ra.arg_dict[op](level)
                        res = ra.func_dict[op](img.copy(), *args)
                    finally:
                        ra.np = np
                    script.done()
                    assert res.dtype == np.uint8 and res.shape == img.shape, (op, res.dtype, res.shape)
                    out["ops"].append(dict(image=k, op=op, level=level, negate=neg,
                                           args=[float(a) if np.isscalar(a) else list(a) for a in args], out=b64(res)))
    for w, h in ((16, 12), (15, 11), (224, 224), (384, 384), (480, 480)):
        for level in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 2.5, 3.3):
            for neg in (False, True):
                deg = (level / ra.MAX_LEVEL) * 30
                deg = -deg if neg else deg
                m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1)
                out["rotation"].append(dict(w=w, h=h, level=level, negate=neg, m=[float(v).hex() for v in m.reshape(-1)]))
    # RandomAugment.__call__ on scripted draws: (N, M, augs, choices, uniforms).
    albef_augs = ['Identity', 'AutoContrast', 'Equalize', 'Brightness', 'Sharpness',
                  'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate']
    seqs = [
        (0, 2, 7, albef_augs, [5, 9], [0.3, 0.2, 0.1, 0.9]),     # ShearX (+), Rotate (+)
        (1, 2, 7, albef_augs, [4, 2], [0.5, 0.5]),               # Sharpness, Equalize: 0.5 is applied
        (2, 2, 7, albef_augs, [7, 7], [0.7, 0.2, 0.6]),          # TranslateX skipped, then applied (-)
        (0, 2, 7, albef_augs, [3, 1], [0.51, 0.99]),             # both skipped
        (1, 3, 7, albef_augs, [8, 6, 1], [0.4, 0.4, 0.1, 0.8, 0.2]),  # TranslateY (+), ShearY (-), AutoContrast
        (0, 3, 2.5, all_ops, [12, 5, 6], [0.1, 0.2, 0.3]),       # Posterize, Color, Contrast
        (2, 2, 10, all_ops, [4, 13], [0.0, 0.45, 0.55]),         # Solarize, ShearY (-)
    ]
    for k, n, m, augs, choices, uniforms in seqs:
        script = Script(choices, uniforms)
        ra.np = NumpyWithScript(script)
        try:
            res = ra.RandomAugment(n, m, isPIL=True, augs=augs)(Image.fromarray(imgs[k], "RGB"))
        finally:
            ra.np = np
        script.done()
        assert res.dtype == np.uint8 and res.shape == imgs[k].shape
        out["sequences"].append(dict(image=k, n=n, m=m, augs=augs, choices=choices, uniforms=uniforms, out=b64(res)))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "albef_randaugment.json.gz")
    data = (json.dumps(out, separators=(",", ":")) + "\n").encode()
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as g:
        g.write(data)
    print(f"wrote {path}: {len(out['ops'])} op cases, {len(out['rotation'])} rotation matrices, "
          f"{len(out['sequences'])} sequences")


if __name__ == "__main__":
    main()
