"""Makes codec_parity.safetensors, the PyTorch reference for vampnet's codec (codec.go, codec_quantize.go).

Run from the repository root with Debian's python3-torch (1.13.1, the libtorch the Go side links),
after checking out the official code at the pinned commit:
    git clone https://github.com/hugofloresgarcia/lac /tmp/lac-git
    mkdir -p /tmp/lac && git -C /tmp/lac-git archive 7761206878d1fba79aad314a38f975e9589af0a4 | tar -x -C /tmp/lac
    /usr/bin/python3 vampnet/testdata/gen_codec_parity.py /tmp/lac

This RUNS the official code of github.com/hugofloresgarcia/lac at commit
7761206878d1fba79aad314a38f975e9589af0a4 (HEAD, 2024-05-27), imported from the checkout given as the
argument (nothing of it is copied here). Its lac/ tree (c4aa961f) is the same at every commit since
fac6b9b (2023-03-16, "stack codes"), so it is also the code that VampNet's ismir-2023 branch
(`from lac.model.lac import LAC as DAC`, setup.py's unpinned `lac @ git+...`) installed in mid 2023:
  lac/model/lac.py     LAC (Encoder, EncoderBlock, EncoderLayer, Decoder, Block, MRFBlock,
                       ResidualBlock, ResidualLayer), preprocess, encode, decode, forward;
  lac/nn/layers.py     WNConv1d, WNConvTranspose1d (torch weight_norm), Snake1d and the scripted snake;
  lac/nn/quantize.py   VectorQuantize, ResidualVectorQuantize (forward, from_codes, from_latents).

float32 throughout, eval mode, torch.manual_seed(0). Model (a small LAC): sample_rate 16000,
encoder_dim 4, encoder_rates [2, 4] (latent 16 channels, hop 8), decoder_dim 16, decoder_rates [4, 2]
(LAC takes its hop_length from the decoder rates: 8 too), n_codebooks 3, codebook_size 32,
codebook_dim 4, quantizer_dropout False. After LAC's own init every parameter is perturbed so that
mistakes show: weight_v += 0.1*randn, weight_g *= U(0.8, 1.2), biases 0.1*randn, Snake alphas
U(0.5, 1.5); codebooks keep nn.Embedding's N(0, 1).

Tensors (F32 unless said; codes I64):
  "w.<name>"            every LAC parameter, state_dict names (encoder.block.N..., quantizer.quantizers.N.
                        {in_proj,out_proj}.{weight_g,weight_v,bias}, quantizer.quantizers.N.codebook.weight,
                        decoder.model.N...).
  "in.audio" [2,1,203]  the input: 203 samples, padded by preprocess to 208 = 26 frames of 8.
  "out.z"               [2,16,26] encode's quantized z;  "out.codes" [2,3,26] I64;  "out.latents" [2,12,26];
  "out.commitment_loss", "out.codebook_loss" [] ;  "out.audio" [2,1,203]  (forward: decode(z, length)).
  "out.loss" [] = audio.pow(2).mean() + commitment_loss + codebook_loss;
  "grad.<name>"         d loss / d parameter for every parameter;  "grad.in.audio" d loss / d input.
  "nq2.z", "nq2.commitment_loss", "nq2.codebook_loss", "nq2.codes" (I64), "nq2.audio": encode with
                        n_quantizers=2 (all codes still come back; z and the losses use the first 2).
  "mask.in.n" [2] I64 = [3, 1]: a per-item n_quantizers tensor, as quantizer dropout draws it, passed
                        to model.quantizer on the encoder output "mask.in.z" [2,16,26] (requires grad);
                        "mask.z", "mask.commitment_loss", "mask.codebook_loss"; "mask.grad.z" the
                        gradient of mask.z.pow(2).mean() + both losses w.r.t. mask.in.z.
  "fc.z", "fc.z_p"      quantizer.from_codes(out.codes)[0:2];  "fc.audio" decode(fc.z) full length (208).
  "fl.z", "fl.z_p", "fl.codes" (I64)   quantizer.from_latents(out.latents).
  "fl2.z", "fl2.codes"  from_latents on the first 8 latent channels only (2 codebooks).
The script checks that every code's best -distance beats the second best by more than 1e-4 (the gaps are
printed), so that float32 rounding cannot flip one in the Go port.

---- Stubs. Debian has none of audiotools, argbind (unused by lac/) or einops; these stand in, and none
changes a number:
  einops.rearrange: only the two patterns lac/nn/quantize.py uses, "b d t -> (b t) d" (permute to
    b t d, then reshape) and "(b t) -> b t" (reshape with b given), which is what einops computes;
    any other pattern raises.
  audiotools: imported by lac/__init__.py (which appends to BaseModel.INTERN/EXTERN, the torch.package
    export lists), lac/model/lac.py (BaseModel as LAC's base class; AudioSignal only in __main__),
    lac/model/base.py (CodecMixin.reconstruct, not called), lac/model/discriminator.py and lac/nn/loss.py
    (GAN training, not called). BaseModel is nn.Module with the two list attributes (audiotools'
    BaseModel adds only save/load helpers and a device property to nn.Module); AudioSignal, STFTParams,
    L1Loss and the spectral losses raise if used.
"""
import os
import sys
import types

import torch
from torch import nn

COMMIT = "7761206878d1fba79aad314a38f975e9589af0a4"

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402  the fixture scripts' shared writer (Debian has no safetensors package)


# ---------------------------------------------------------------- stubs
def _rearrange(x, pattern, **axes):
    if pattern == "b d t -> (b t) d":
        return x.permute(0, 2, 1).reshape(-1, x.shape[1])
    if pattern == "(b t) -> b t":
        return x.reshape(axes["b"], -1)
    raise NotImplementedError("einops stub: pattern %r" % pattern)


class _Unused:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("audiotools stub: %s is not used by the codec" % type(self).__name__)


class _BaseModel(nn.Module):
    INTERN = []
    EXTERN = []


def install_stubs():
    einops = types.ModuleType("einops")
    einops.rearrange = _rearrange
    at = types.ModuleType("audiotools")
    ml = types.ModuleType("audiotools.ml")
    ml.BaseModel = _BaseModel
    metrics = types.ModuleType("audiotools.metrics")
    distance = types.ModuleType("audiotools.metrics.distance")
    spectral = types.ModuleType("audiotools.metrics.spectral")
    for name in ("AudioSignal", "STFTParams"):
        setattr(at, name, type(name, (_Unused,), {}))
    distance.L1Loss = type("L1Loss", (_Unused,), {})
    for name in ("MelSpectrogramLoss", "MultiScaleSTFTLoss", "PhaseLoss"):
        setattr(spectral, name, type(name, (_Unused,), {}))
    at.ml, at.metrics, metrics.distance, metrics.spectral = ml, metrics, distance, spectral
    sys.modules.update({"einops": einops, "audiotools": at, "audiotools.ml": ml, "audiotools.metrics": metrics,
                        "audiotools.metrics.distance": distance, "audiotools.metrics.spectral": spectral})


def load_official(path):
    install_stubs()
    sys.path.insert(0, os.path.abspath(path))
    import lac.model.lac as lac_mod  # noqa: E402
    assert os.path.abspath(lac_mod.__file__).startswith(os.path.abspath(path)), lac_mod.__file__
    return lac_mod


# ---------------------------------------------------------------- helpers
def code_margin(q, latents):
    """Smallest gap between the best and second-best -dist over all positions (decode_latents' argmax)."""
    enc = torch.nn.functional.normalize(_rearrange(latents, "b d t -> (b t) d"))
    cb = torch.nn.functional.normalize(q.codebook.weight)
    dist = enc.pow(2).sum(1, keepdim=True) - 2 * enc @ cb.t() + cb.pow(2).sum(1, keepdim=True).t()
    top = (-dist).topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]).min().item()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_codec_parity.py <lac checkout at %s>" % COMMIT)
    lac_mod = load_official(sys.argv[1])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    model = lac_mod.LAC(encoder_dim=4, encoder_rates=[2, 4], decoder_dim=16, decoder_rates=[4, 2], n_codebooks=3,
                        codebook_size=32, codebook_dim=4, quantizer_dropout=False, sample_rate=16000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_v"):
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.8, 1.2))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith("alpha"):
                p.uniform_(0.5, 1.5)
    model.eval()
    T = {}
    names = [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        T["w." + n] = p.detach().clone()

    t = torch.arange(203, dtype=torch.float32) / 16000
    audio = (0.5 * torch.sin(2 * torch.pi * 440 * t) + 0.2 * torch.randn(2, 1, 203)).contiguous()
    audio[1] *= 0.7
    T["in.audio"] = audio.clone()
    x = audio.clone().requires_grad_(True)

    # ------------------------------------------------ forward, loss, gradients
    out = model(x)
    loss = out["audio"].pow(2).mean() + out["vq/commitment_loss"] + out["vq/codebook_loss"]
    loss.backward()
    T["out.z"], T["out.codes"], T["out.latents"] = out["z"], out["codes"], out["latents"]
    T["out.commitment_loss"], T["out.codebook_loss"] = out["vq/commitment_loss"], out["vq/codebook_loss"]
    T["out.audio"], T["out.loss"] = out["audio"], loss
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        T["grad." + n] = p.grad.detach().clone()
    T["grad.in.audio"] = x.grad.detach().clone()
    assert out["codes"].shape == (2, 3, 26) and out["audio"].shape == (2, 1, 203), (out["codes"].shape, out["audio"].shape)

    margins = []
    with torch.no_grad():
        z = model.encoder(model.preprocess(audio, None)[0])
        residual = z
        for q in model.quantizer.quantizers:
            margins.append(code_margin(q, q.in_proj(residual)))
            residual = residual - q(residual)[0]

        # ------------------------------------------------ n_quantizers = 2
        o2 = model(audio, n_quantizers=2)
        T["nq2.z"], T["nq2.codes"], T["nq2.audio"] = o2["z"], o2["codes"], o2["audio"]
        T["nq2.commitment_loss"], T["nq2.codebook_loss"] = o2["vq/commitment_loss"], o2["vq/codebook_loss"]

        # ------------------------------------------------ from_codes, from_latents
        zq, zp, _ = model.quantizer.from_codes(out["codes"])
        T["fc.z"], T["fc.z_p"] = zq, zp
        T["fc.audio"] = model.decode(zq)["audio"]
        zq, zp, codes = model.quantizer.from_latents(out["latents"])
        T["fl.z"], T["fl.z_p"], T["fl.codes"] = zq, zp, codes
        assert torch.equal(codes, out["codes"])
        zq, _, codes = model.quantizer.from_latents(out["latents"][:, :8])
        T["fl2.z"], T["fl2.codes"] = zq, codes

    assert min(margins) > 1e-4, margins  # float32 rounding (~1e-7 here) cannot flip a code

    # ------------------------------------------------ per-item n_quantizers (quantizer dropout's mask)
    n = torch.tensor([3, 1])
    zin = z.detach().clone().requires_grad_(True)
    om = model.quantizer(zin, n)
    (om["z"].pow(2).mean() + om["vq/commitment_loss"] + om["vq/codebook_loss"]).backward()
    T["mask.in.n"], T["mask.in.z"] = n, z.detach().clone()
    T["mask.z"], T["mask.commitment_loss"], T["mask.codebook_loss"] = om["z"], om["vq/commitment_loss"], om["vq/codebook_loss"]
    T["mask.grad.z"] = zin.grad.detach().clone()

    # ------------------------------------------------ write and verify
    T = {k: v.detach().contiguous() for k, v in T.items()}
    for name, v in T.items():
        assert v.dtype in (torch.float32, torch.int64), (name, v.dtype)
        if v.dtype == torch.float32:
            assert torch.isfinite(v).all(), name
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "codec_parity.safetensors")
    st_write.write(path, T, {"source": "github.com/hugofloresgarcia/lac@" + COMMIT, "torch": torch.__version__})
    back, _ = st_write.read(path)
    assert sorted(back) == sorted(T)
    for name, v in T.items():
        assert back[name].dtype == v.dtype and torch.equal(back[name], v), name
    print("wrote %s: %d tensors, %d bytes; %d parameters (%d values)"
          % (path, len(T), os.path.getsize(path), len(names), sum(p.numel() for p in model.parameters())))
    print("loss %.6f  commitment %.6f  codebook %.6f  max|audio| %.4f"
          % (loss.item(), out["vq/commitment_loss"].item(), out["vq/codebook_loss"].item(), out["audio"].abs().max().item()))
    print("smallest best-vs-second -dist gap per codebook: %s" % ["%.3g" % m for m in margins])
    print("codes[0]:", out["codes"][0].tolist())


if __name__ == "__main__":
    main()
