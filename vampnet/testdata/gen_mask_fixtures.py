"""Makes mask_fixtures.json, the reference for vampnet/mask.go's deterministic masks.

Run from the repository root with Debian's python3-torch (1.13, the libtorch the Go side links), on a
checkout of the official code at the pinned commit:
    mkdir -p /tmp/vampnet-ismir
    git -C /work/.mirror/hugofloresgarcia+vampnet/repo archive ismir-2023 | tar -x -C /tmp/vampnet-ismir
    # or: git clone -b ismir-2023 https://github.com/hugofloresgarcia/vampnet /tmp/vampnet-ismir
    /usr/bin/python3 vampnet/testdata/gen_mask_fixtures.py /tmp/vampnet-ismir

This RUNS the official code of github.com/hugofloresgarcia/vampnet, branch ismir-2023, commit
dce1655ecd9f6044ce9e13e95e1423a50837a615, imported from the checkout given as the argument (nothing of it
is copied here):
  vampnet/mask.py       _gamma, _invgamma, full_mask, empty_mask, apply_mask, inpaint, periodic_mask
                        (random_roll only with period 1, whose roll offset is always 0), time_stretch_mask,
                        codebook_unmask, codebook_mask, mask_and, mask_or, and the assertions that refuse
                        bad input (the cases marked "error");
  vampnet/util.py       scalar_to_batch_tensor (through mask.py);
  vampnet/interface.py  Interface.make_beat_mask and Interface.s2t, taken out of the module with ast and
                        run as functions on a SimpleNamespace holding what they read (codec.sample_rate,
                        codec.hop_length, beat_tracker.extract_beats returning the given beat times,
                        device, c2f, coarse.n_codebooks): importing interface.py would import the LAC codec,
                        WaveBeat and the transformer, none of which the two methods use. dropout 0, so the
                        bernoulli draws are all ones.

Stubs (nothing they stand in for runs here):
  audiotools  mask.py imports AudioSignal for onset_mask's annotation; onset_mask (madmom) is not run.
  einops      vampnet/util.py imports rearrange for codebook_flatten, which mask.py does not call.
The package vampnet is registered with its directory as __path__ so that vampnet/__init__.py (which
imports the transformer and the interface) does not run.

Every case holds its inputs and the official output, flattened row-major, and the Go test rebuilds the
inputs, calls its function and compares exactly (the gamma values within float32 rounding).
"""
import ast
import json
import math
import os
import subprocess
import sys
import types
from types import SimpleNamespace

import numpy as np
import torch

COMMIT = "dce1655ecd9f6044ce9e13e95e1423a50837a615"


def load_official(root):
    audiotools = types.ModuleType("audiotools")

    class AudioSignal:  # annotation only
        pass

    audiotools.AudioSignal = AudioSignal
    sys.modules["audiotools"] = audiotools
    einops = types.ModuleType("einops")

    def rearrange(*a, **k):
        raise RuntimeError("einops stub: codebook_flatten is not used by the mask fixtures")

    einops.rearrange = rearrange
    sys.modules["einops"] = einops
    pkg = types.ModuleType("vampnet")
    pkg.__path__ = [os.path.join(root, "vampnet")]
    sys.modules["vampnet"] = pkg
    import vampnet.mask as pmask  # noqa: E402

    # Interface.make_beat_mask and Interface.s2t, from interface.py's source
    src = open(os.path.join(root, "vampnet", "interface.py")).read()
    tree = ast.parse(src)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Interface")
    fns = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in ("make_beat_mask", "s2t")]
    assert len(fns) == 2
    mod = ast.Module(body=fns, type_ignores=[])
    ns = {"torch": torch, "np": np, "math": math, "AudioSignal": AudioSignal}
    exec(compile(mod, os.path.join(root, "vampnet", "interface.py"), "exec"), ns)
    return pmask, ns["make_beat_mask"], ns["s2t"]


def flat(t):
    return t.reshape(-1).tolist()


def main():
    root = sys.argv[1]
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        head = ""
    if head and head != COMMIT:
        sys.exit(f"checkout is at {head}, want {COMMIT}")
    print(f"official code: hugofloresgarcia/vampnet {COMMIT}" + ("" if head else " (checkout has no git metadata: assumed)"))
    print(f"torch {torch.__version__}")
    pmask, make_beat_mask, s2t = load_official(root)

    torch.manual_seed(0)
    cases = []

    def add(name, fn, shape, want, **kw):
        c = {"name": name, "fn": fn, "shape": list(shape)}
        c.update(kw)
        if isinstance(want, str):
            c["error"] = want
        else:
            c["want_shape"] = list(want.shape)
            c["want"] = flat(want)
        cases.append(c)

    def run(f):
        try:
            return f()
        except (AssertionError, RuntimeError, IndexError, ValueError) as e:
            return "error: " + (str(e) or type(e).__name__)

    x = torch.randint(0, 1024, (2, 4, 10))
    x1 = torch.randint(0, 1024, (1, 3, 8))

    # full / empty
    add("full", "full_mask", x.shape, pmask.full_mask(x))
    add("empty", "empty_mask", x.shape, pmask.empty_mask(x))

    # inpaint
    for pre, suf in [(2, 3), (0, 0), (12, 0), (0, 12), (-1, 2), (5, 5), (1, 0)]:
        add(f"inpaint {pre} {suf}", "inpaint", x.shape, pmask.inpaint(x, pre, suf), n_prefix=[pre], n_suffix=[suf])
    add("inpaint tensor counts batch 1", "inpaint", x1.shape,
        pmask.inpaint(x1, torch.tensor([3]), torch.tensor([2])), n_prefix=[3], n_suffix=[2])

    # periodic (no random roll), and random roll with period 1 (offset always 0)
    for period, width in [(3, 1), (3, 0), (3, 2), (4, 3), (0, 1), (1, 1), (5, 4), (-3, 1), (7, 20), (2, 1), (10, 1), (11, 2)]:
        add(f"periodic {period} {width}", "periodic_mask", x.shape, run(lambda: pmask.periodic_mask(x, period, width)),
            period=period, width=width, random_roll=False)
    add("periodic negative width", "periodic_mask", x.shape, run(lambda: pmask.periodic_mask(x, 3, -1)),
        period=3, width=-1, random_roll=False)
    add("periodic 1 1 roll", "periodic_mask", x.shape, pmask.periodic_mask(x, 1, 1, random_roll=True),
        period=1, width=1, random_roll=True)
    add("periodic 0 roll", "periodic_mask", x.shape, pmask.periodic_mask(x, 0, 1, random_roll=True),
        period=0, width=1, random_roll=True)
    for k in [1, 2, 3]:
        add(f"time stretch {k}", "time_stretch_mask", x.shape, pmask.time_stretch_mask(x, k), stretch_factor=k)
    add("time stretch 0", "time_stretch_mask", x.shape, run(lambda: pmask.time_stretch_mask(x, 0)), stretch_factor=0)

    # codebook unmask / mask on a random binary mask
    m = torch.bernoulli(torch.full((2, 4, 10), 0.5)).long()
    for n in [0, 1, 2, 4, 6, -1]:
        add(f"codebook_unmask {n}", "codebook_unmask", m.shape, pmask.codebook_unmask(m, n), mask=flat(m), n=n)
    for start in [0, 1, 3, 4, 9, -1]:
        add(f"codebook_mask {start}", "codebook_mask", m.shape, pmask.codebook_mask(m, start), mask=flat(m), start=start)

    # and / or: truth table, random masks, errors
    a = torch.tensor([0, 0, 1, 1]).reshape(1, 1, 4)
    b = torch.tensor([0, 1, 0, 1]).reshape(1, 1, 4)
    add("and truth table", "mask_and", a.shape, pmask.mask_and(a, b), mask=flat(a), mask2=flat(b))
    add("or truth table", "mask_or", a.shape, pmask.mask_or(a, b), mask=flat(a), mask2=flat(b))
    m2 = torch.bernoulli(torch.full((2, 4, 10), 0.3)).long()
    add("and random", "mask_and", m.shape, pmask.mask_and(m, m2), mask=flat(m), mask2=flat(m2))
    add("or random", "mask_or", m.shape, pmask.mask_or(m, m2), mask=flat(m), mask2=flat(m2))
    add("and shape mismatch", "mask_and", m.shape, run(lambda: pmask.mask_and(m, m2[:, :3])), mask=flat(m),
        mask2=flat(m2[:, :3]), shape2=[2, 3, 10])
    nb = m2.clone()
    nb[0, 0, 0] = 2
    add("or non-binary", "mask_or", m.shape, run(lambda: pmask.mask_or(m, nb)), mask=flat(m), mask2=flat(nb))

    # apply_mask
    xm, _ = pmask.apply_mask(x, m, 1024)
    add("apply_mask", "apply_mask", x.shape, xm, x=flat(x), mask=flat(m), mask_token=1024)
    add("apply_mask non-binary", "apply_mask", x.shape, run(lambda: pmask.apply_mask(x, nb, 1024)), x=flat(x),
        mask=flat(nb), mask_token=1024)
    add("apply_mask shape mismatch", "apply_mask", x.shape, run(lambda: pmask.apply_mask(x, m[:, :3], 1024)),
        x=flat(x), mask=flat(m[:, :3]), shape2=[2, 3, 10], mask_token=1024)

    # gamma / invgamma, float32 as the official computes them
    r = torch.tensor([0.0, 0.1, 0.25, 1 / 3, 0.5, 2 / 3, 0.9, 1.0], dtype=torch.float32)
    g = pmask._gamma(r)
    cases.append({"name": "gamma", "fn": "gamma", "r": r.tolist(), "want": g.tolist()})
    y = torch.tensor([1.0, 0.9, 0.5, 0.1, 1e-10], dtype=torch.float32)
    cases.append({"name": "invgamma", "fn": "invgamma", "r": y.tolist(), "want": pmask._invgamma(y).tolist()})

    # make_beat_mask (interface.py), the LAC codec's 44.1 kHz and hop 768, dropout 0
    sr, hop = 44100, 768
    beats = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75]
    downbeats = [0.0, 1.0, 2.0]
    for name, kw in [
        ("defaults", {}),
        ("before after", {"before_beat_s": 0.05, "after_beat_s": 0.1}),
        ("downbeats only", {"mask_upbeats": False, "after_beat_s": 0.05}),
        ("upbeats only no invert", {"mask_downbeats": False, "invert": False}),
        ("downsample", {"beat_downsample_factor": 2, "downbeat_downsample_factor": 2, "after_beat_s": 0.04}),
    ]:
        ns = SimpleNamespace(
            codec=SimpleNamespace(sample_rate=sr, hop_length=hop),
            beat_tracker=SimpleNamespace(extract_beats=lambda sig: (np.array(beats), np.array(downbeats))),
            device="cpu", c2f=None, coarse=SimpleNamespace(n_codebooks=4))
        ns.s2t = lambda seconds, ns=ns: s2t(ns, seconds)
        sig = SimpleNamespace(duration=3.0)
        bm = make_beat_mask(ns, sig, **kw)
        add(f"beat mask {name}", "make_beat_mask", bm.shape, bm, beats=beats, downbeats=downbeats, duration=3.0,
            sample_rate=sr, hop_length=hop, n_codebooks=4, options=kw)

    out = {"commit": COMMIT, "torch": torch.__version__, "cases": cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mask_fixtures.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
