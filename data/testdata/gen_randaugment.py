"""Writes randaugment.json, the PIL references for data/randaugment_test.go.

Run with /usr/bin/python3 (PIL 9.4, numpy; no torch, torchvision or timm):

    /usr/bin/python3 data/testdata/gen_randaugment.py

The op and level functions below are timm 0.3.2's timm/data/auto_augment.py
(huggingface/pytorch-image-models commit 6504a42832cb6687e3f595c37e003ea920268365,
"Version 0.3.2", the version MAE pins), copied as they are except for the two
places that draw random numbers: _randomly_negate takes the sign from the case
(NEGATE) and _interpolation the case's resample, so each op runs at a fixed
magnitude, sign and interpolation. hparams are those transforms_imagenet_train
builds for MAE's main_finetune.py (img_size 224, ImageNet mean,
interpolation='bicubic'); the cases also run the ops with bilinear.

It also transcribes, on fixed uniform draws u in [0, 1), MAE's
util/crop.RandomResizedCrop.get_params (facebookresearch/mae commit efb2a80)
and the box size of timm 0.3.2's RandomErasing._erase, with
uniform(a, b) = a + (b - a) * u (Python's random.uniform) and
randint(0, n) = int(u * n) standing in for torch's generator.
"""
import base64
import json
import math
import os

import numpy as np
import PIL
from PIL import Image, ImageOps, ImageEnhance

TIMM_COMMIT = "6504a42832cb6687e3f595c37e003ea920268365"
MAE_COMMIT = "efb2a8062c206524e35e47d04501ed4f544c0ae8"

# ---- timm 0.3.2 auto_augment.py (verbatim but for NEGATE and RESAMPLE) ----

_PIL_VER = tuple([int(x) for x in PIL.__version__.split('.')[:2]])

_FILL = (128, 128, 128)

_MAX_LEVEL = 10.

NEGATE = False
RESAMPLE = Image.BICUBIC


def _interpolation(kwargs):
    kwargs.pop('resample', None)
    return RESAMPLE


def _check_args_tf(kwargs):
    if 'fillcolor' in kwargs and _PIL_VER < (5, 0):
        kwargs.pop('fillcolor')
    kwargs['resample'] = _interpolation(kwargs)


def shear_x(img, factor, **kwargs):
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.AFFINE, (1, factor, 0, 0, 1, 0), **kwargs)


def shear_y(img, factor, **kwargs):
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, factor, 1, 0), **kwargs)


def translate_x_rel(img, pct, **kwargs):
    pixels = pct * img.size[0]
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.AFFINE, (1, 0, pixels, 0, 1, 0), **kwargs)


def translate_y_rel(img, pct, **kwargs):
    pixels = pct * img.size[1]
    _check_args_tf(kwargs)
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, pixels), **kwargs)


def rotate(img, degrees, **kwargs):
    _check_args_tf(kwargs)
    if _PIL_VER >= (5, 2):
        return img.rotate(degrees, **kwargs)
    raise NotImplementedError  # older PIL branches left out


def auto_contrast(img, **__):
    return ImageOps.autocontrast(img)


def invert(img, **__):
    return ImageOps.invert(img)


def equalize(img, **__):
    return ImageOps.equalize(img)


def solarize(img, thresh, **__):
    return ImageOps.solarize(img, thresh)


def solarize_add(img, add, thresh=128, **__):
    lut = []
    for i in range(256):
        if i < thresh:
            lut.append(min(255, i + add))
        else:
            lut.append(i)
    if img.mode in ("L", "RGB"):
        if img.mode == "RGB" and len(lut) == 256:
            lut = lut + lut + lut
        return img.point(lut)
    else:
        return img


def posterize(img, bits_to_keep, **__):
    if bits_to_keep >= 8:
        return img
    return ImageOps.posterize(img, bits_to_keep)


def contrast(img, factor, **__):
    return ImageEnhance.Contrast(img).enhance(factor)


def color(img, factor, **__):
    return ImageEnhance.Color(img).enhance(factor)


def brightness(img, factor, **__):
    return ImageEnhance.Brightness(img).enhance(factor)


def sharpness(img, factor, **__):
    return ImageEnhance.Sharpness(img).enhance(factor)


def _randomly_negate(v):
    """With 50% prob, negate the value"""
    return -v if NEGATE else v


def _rotate_level_to_arg(level, _hparams):
    # range [-30, 30]
    level = (level / _MAX_LEVEL) * 30.
    level = _randomly_negate(level)
    return level,


def _enhance_level_to_arg(level, _hparams):
    # range [0.1, 1.9]
    return (level / _MAX_LEVEL) * 1.8 + 0.1,


def _enhance_increasing_level_to_arg(level, _hparams):
    # the 'no change' level is 1.0, moving away from that towards 0. or 2.0 increases the enhancement blend
    # range [0.1, 1.9]
    level = (level / _MAX_LEVEL) * .9
    level = 1.0 + _randomly_negate(level)
    return level,


def _shear_level_to_arg(level, _hparams):
    # range [-0.3, 0.3]
    level = (level / _MAX_LEVEL) * 0.3
    level = _randomly_negate(level)
    return level,


def _translate_rel_level_to_arg(level, hparams):
    # default range [-0.45, 0.45]
    translate_pct = hparams.get('translate_pct', 0.45)
    level = (level / _MAX_LEVEL) * translate_pct
    level = _randomly_negate(level)
    return level,


def _posterize_level_to_arg(level, _hparams):
    # As per Tensorflow TPU EfficientNet impl
    # range [0, 4], 'keep 0 up to 4 MSB of original image'
    # intensity/severity of augmentation decreases with level
    return int((level / _MAX_LEVEL) * 4),


def _posterize_increasing_level_to_arg(level, hparams):
    # As per Tensorflow models research and UDA impl
    # range [4, 0], 'keep 4 down to 0 MSB of original image',
    # intensity/severity of augmentation increases with level
    return 4 - _posterize_level_to_arg(level, hparams)[0],


def _solarize_level_to_arg(level, _hparams):
    # range [0, 256]
    # intensity/severity of augmentation decreases with level
    return int((level / _MAX_LEVEL) * 256),


def _solarize_increasing_level_to_arg(level, _hparams):
    # range [0, 256]
    # intensity/severity of augmentation increases with level
    return 256 - _solarize_level_to_arg(level, _hparams)[0],


def _solarize_add_level_to_arg(level, _hparams):
    # range [0, 110]
    return int((level / _MAX_LEVEL) * 110),


LEVEL_TO_ARG = {
    'AutoContrast': None,
    'Equalize': None,
    'Invert': None,
    'Rotate': _rotate_level_to_arg,
    'Posterize': _posterize_level_to_arg,
    'PosterizeIncreasing': _posterize_increasing_level_to_arg,
    'Solarize': _solarize_level_to_arg,
    'SolarizeIncreasing': _solarize_increasing_level_to_arg,
    'SolarizeAdd': _solarize_add_level_to_arg,
    'Color': _enhance_level_to_arg,
    'ColorIncreasing': _enhance_increasing_level_to_arg,
    'Contrast': _enhance_level_to_arg,
    'ContrastIncreasing': _enhance_increasing_level_to_arg,
    'Brightness': _enhance_level_to_arg,
    'BrightnessIncreasing': _enhance_increasing_level_to_arg,
    'Sharpness': _enhance_level_to_arg,
    'SharpnessIncreasing': _enhance_increasing_level_to_arg,
    'ShearX': _shear_level_to_arg,
    'ShearY': _shear_level_to_arg,
    'TranslateXRel': _translate_rel_level_to_arg,
    'TranslateYRel': _translate_rel_level_to_arg,
}

NAME_TO_OP = {
    'AutoContrast': auto_contrast,
    'Equalize': equalize,
    'Invert': invert,
    'Rotate': rotate,
    'Posterize': posterize,
    'PosterizeIncreasing': posterize,
    'Solarize': solarize,
    'SolarizeIncreasing': solarize,
    'SolarizeAdd': solarize_add,
    'Color': color,
    'ColorIncreasing': color,
    'Contrast': contrast,
    'ContrastIncreasing': contrast,
    'Brightness': brightness,
    'BrightnessIncreasing': brightness,
    'Sharpness': sharpness,
    'SharpnessIncreasing': sharpness,
    'ShearX': shear_x,
    'ShearY': shear_y,
    'TranslateXRel': translate_x_rel,
    'TranslateYRel': translate_y_rel,
}


def apply_op(name, img, magnitude, hparams):
    """AugmentOp.__call__ after its prob check and magnitude draw."""
    kwargs = dict(fillcolor=hparams['img_mean'], resample=hparams['interpolation'])
    level_fn = LEVEL_TO_ARG[name]
    level_args = level_fn(magnitude, hparams) if level_fn is not None else tuple()
    return NAME_TO_OP[name](img, *level_args, **kwargs)


# transforms_imagenet_train's aa_params for MAE: img_size 224, ImageNet mean, bicubic
MEAN = (0.485, 0.456, 0.406)
HPARAMS = dict(translate_const=int(224 * 0.45), img_mean=tuple([min(255, round(255 * x)) for x in MEAN]),
               interpolation=Image.BICUBIC)

SIGNED = {'Rotate', 'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing',
          'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel'}
GEOMETRIC = {'Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel'}


# ---- MAE util/crop.py's get_params, on fixed draws ----

def clamped_crop(width, height, scale, ratio, u):
    uniform = lambda a, b, v: a + (b - a) * v
    randint = lambda n, v: int(v * n)
    area = height * width
    target_area = area * uniform(scale[0], scale[1], u[0])
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    aspect_ratio = math.exp(uniform(log_ratio[0], log_ratio[1], u[1]))
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    w = min(w, width)
    h = min(h, height)
    i = randint(height - h + 1, u[2])
    j = randint(width - w + 1, u[3])
    return i, j, h, w


# ---- timm 0.3.2 RandomErasing._erase's box size, on fixed draws ----

def erase_size(img_h, img_w, count, u, min_area=0.02, max_area=1 / 3, min_aspect=0.3):
    uniform = lambda a, b, v: a + (b - a) * v
    log_aspect_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    area = img_h * img_w
    target_area = uniform(min_area, max_area, u[0]) * area / count
    aspect_ratio = math.exp(uniform(*log_aspect_ratio, u[1]))
    h = int(round(math.sqrt(target_area * aspect_ratio)))
    w = int(round(math.sqrt(target_area / aspect_ratio)))
    return h, w


def images():
    rs = np.random.RandomState(0)
    # A: 11 x 9 noise, each channel in its own narrow range, so autocontrast
    # and equalize change it and bicubic overshoots clip.
    a = np.stack([rs.randint(40, 201, (9, 11)), rs.randint(10, 121, (9, 11)), rs.randint(90, 251, (9, 11))], -1)
    # B: 9 x 7, red flat (autocontrast and equalize leave it), green two
    # values, blue a ramp.
    yy, xx = np.mgrid[0:7, 0:9]
    b = np.stack([np.full((7, 9), 77), np.where((xx + yy) % 3 == 0, 30, 220), 20 + 25 * xx + 3 * yy], -1)
    return [Image.fromarray(a.astype(np.uint8), 'RGB'), Image.fromarray(b.astype(np.uint8), 'RGB')]


def b64(img):
    return base64.b64encode(np.asarray(img, dtype=np.uint8).tobytes()).decode()


def main():
    global NEGATE, RESAMPLE
    imgs = images()
    out = dict(timm_commit=TIMM_COMMIT, mae_commit=MAE_COMMIT, pil=PIL.__version__, fill=list(HPARAMS['img_mean']),
               images=[dict(w=im.size[0], h=im.size[1], rgb=b64(im)) for im in imgs], ops=[], crops=[], erase=[])
    for k, mags in ((0, (9.0, 9.37, 10.0)), (1, (0.0, 9.0))):
        for name in LEVEL_TO_ARG:
            for mag in mags:
                for neg in ((False, True) if name in SIGNED else (False,)):
                    for rs_name, rs in ((('bicubic', Image.BICUBIC), ('bilinear', Image.BILINEAR))
                                        if name in GEOMETRIC else (('bicubic', Image.BICUBIC),)):
                        NEGATE, RESAMPLE = neg, rs
                        res = apply_op(name, imgs[k], mag, HPARAMS)
                        assert res.mode == 'RGB' and res.size == imgs[k].size
                        out['ops'].append(dict(image=k, op=name, magnitude=mag, negate=neg, resample=rs_name, out=b64(res)))
    draws = [(0.0, 0.0, 0.0, 0.0), (0.999999, 0.999999, 0.999999, 0.999999), (0.5, 0.5, 0.5, 0.5)]
    rs = np.random.RandomState(1)
    draws += [tuple(rs.random_sample(4)) for _ in range(20)]
    for width, height in ((500, 375), (375, 500), (224, 224), (60, 13)):
        for scale in ((0.08, 1.0), (0.2, 1.0)):
            for u in draws:
                i, j, h, w = clamped_crop(width, height, scale, (3. / 4., 4. / 3.), u)
                out['crops'].append(dict(w=width, h=height, scale=list(scale), u=list(u), box=[i, j, h, w]))
    for img_h, img_w in ((224, 224), (28, 28), (13, 60)):
        for count in (1, 2):
            for u in draws:
                h, w = erase_size(img_h, img_w, count, u)
                out['erase'].append(dict(h=img_h, w=img_w, count=count, u=list(u[:2]), box=[h, w]))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'randaugment.json')
    with open(path, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')
    print(f"wrote {path}: {len(out['ops'])} op cases, {len(out['crops'])} crops, {len(out['erase'])} erasing boxes")


if __name__ == '__main__':
    main()
