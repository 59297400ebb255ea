#!/usr/bin/env python3
"""ONNX Runtime's static QDQ configurations against qtool's default (`cargo xtask compare`).

Three subcommands, each printing one JSON object per line on stdout (logs go to stderr):

  prepare   --photos DIR --models DIR --digits DIR --out DIR [--only m1,m2]
            Makes the calibration and evaluation sets (disjoint, deterministic) of every model:
            digits: examples/digits' calib.npy / eval.npy / eval_labels.npy as they are;
            ppocrv4_det: tiles of the sample photos at 320x320 (left or right half of each photo to
            calibration, the other half to evaluation);
            ppocrv4_rec / ppocr_mobile_v2_cls: text lines found by the FP32 detector on the photos
            (longer side 960; DB post-processing: probability > 0.3, connected components, box
            score > 0.6, unclip 1.5) cropped from the photo, and 4 bands of text.png (handwriting
            the detector misses), each with overlapping windows of 3 and 6 heights; whole lines go
            either to calibration or to evaluation. rec sees them at 48x320, cls at 48x192 with 180
            degree rotation for a deterministic half of them (label 1 = rotated).
            The photos arrive as RGB uint8 [H, W, 3] .npy files (the xtask decodes them).
  quantize  --model M --calib C.npy --out-dir D
            onnxruntime.quantization.shape_inference.quant_pre_process(M), then quantize_static in
            QDQ format for every calibrate_method (MinMax, Entropy, Percentile) x per_channel x
            activation type (QUInt8, QInt8); weights QInt8, reduce_range False, other options ORT's
            defaults. A configuration ORT fails to write or cannot load is reported with its error.
  evaluate  --task T --fp32 M --eval E.npy [--labels L.npy] --candidate NAME=PATH ...
            Runs every candidate in ONNX Runtime (CPU) on the evaluation set and prints its task
            metric and the output SQNR against the FP32 model.

Everything is deterministic (fixed splits, no random numbers beyond a seeded permutation).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import traceback

import numpy as np
import onnxruntime as ort

DET_SIZE = 320  # detection tiles of the det data set
DET_THRESH = 0.3  # PaddleOCR DBPostProcess thresh
BOX_THRESH = 0.6  # PaddleOCR DBPostProcess box_thresh
UNCLIP = 1.5  # PaddleOCR DBPostProcess unclip_ratio
REC_SHAPE = (48, 320)
CLS_SHAPE = (48, 192)
BATCH = 8
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run_batched(sess, x):
    """Runs the model's single input over the samples of x (first axis) in batches; first output."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i : i + BATCH]})[0] for i in range(0, len(x), BATCH)]
    return np.concatenate(outs, axis=0)


# ----------------------------------------------------------------------------- images


def resize(img, h, w):
    """Bilinear resize of an HWC float image (half-pixel centres, like cv2.INTER_LINEAR)."""
    H, W = img.shape[:2]

    def axis(n_out, n_in):
        c = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        c = np.clip(c, 0, n_in - 1)
        i0 = np.floor(c).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (c - i0).astype(np.float32)

    y0, y1, wy = axis(h, H)
    x0, x1, wx = axis(w, W)
    wy = wy[:, None, None]
    wx = wx[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bot = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy) + bot * wy


def bgr(img_rgb_u8):
    return img_rgb_u8[..., ::-1].astype(np.float32)


def det_input(region_bgr):
    """PaddleOCR detection preprocessing of an HWC BGR float image resized to DET_SIZE^2: NCHW."""
    x = resize(region_bgr, DET_SIZE, DET_SIZE) / 255.0
    x = (x - MEAN) / STD
    return x.transpose(2, 0, 1).astype(np.float32)


def line_input(crop_bgr, shape):
    """PaddleOCR rec/cls preprocessing: height 48, width by aspect (at most the model's), (x/255 -
    0.5)/0.5, zero padding on the right: CHW."""
    h, w = shape
    ch, cw = crop_bgr.shape[:2]
    nw = min(w, max(1, int(math.ceil(h * cw / ch))))
    x = resize(crop_bgr, h, nw) / 255.0
    x = (x - 0.5) / 0.5
    out = np.zeros((3, h, w), np.float32)
    out[:, :, :nw] = x.transpose(2, 0, 1)
    return out


def load_photos(d):
    photos = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".npy"):
            a = np.load(os.path.join(d, f))
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise SystemExit(f"{f}: expected an RGB uint8 [H, W, 3] array, got {a.dtype} {a.shape}")
            photos.append((f[:-4], a))
    if not photos:
        raise SystemExit(f"no photos in {d}")
    return photos


def det_tiles(img):
    """Deterministic views of one region: the whole region, its four quadrants, its centre."""
    H, W = img.shape[:2]
    views = [img]
    for y in (0, H // 2):
        for x in (0, W // 2):
            views.append(img[y : y + H // 2, x : x + W // 2])
    views.append(img[H // 4 : H // 4 + H // 2, W // 4 : W // 4 + W // 2])
    return [v for v in views if v.shape[0] >= 16 and v.shape[1] >= 16]


def text_boxes(prob, min_side=4):
    """DB post-processing with axis-aligned boxes: components of prob > DET_THRESH whose mean
    probability exceeds BOX_THRESH, each box grown by area * UNCLIP / perimeter."""
    from scipy import ndimage

    mask = prob > DET_THRESH
    lab, n = ndimage.label(mask)
    boxes = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        ys, xs = sl
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if min(h, w) < min_side:
            continue
        score = float(prob[sl][lab[sl] == i].mean())
        if score < BOX_THRESH:
            continue
        d = w * h * UNCLIP / (2 * (w + h))
        boxes.append((ys.start - d, xs.start - d, ys.stop + d, xs.stop + d))
    return boxes


def det_full_input(img_bgr, long_side=960):
    """PaddleOCR detection preprocessing of a whole photo: aspect kept, the longer side resized to
    `long_side`, both sides rounded to multiples of 32; NCHW and the (y, x) scale back to the photo."""
    H, W = img_bgr.shape[:2]
    s = long_side / max(H, W)
    h, w = max(32, int(round(H * s / 32)) * 32), max(32, int(round(W * s / 32)) * 32)
    x = resize(img_bgr, h, w) / 255.0
    x = ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
    return x, H / h, W / w


def text_lines(det_model, photos):
    """Text-line crops (BGR float) of every photo, found by the FP32 detector on the whole photo
    (longer side 960, as PaddleOCR's det_limit_side_len), in reading order, as (photo, box, crop)."""
    sess = session(det_model)
    lines = []
    for name, img in photos:
        src = bgr(img)
        H, W = src.shape[:2]
        x, sy, sx = det_full_input(src)
        prob = run_batched(sess, x)[0, 0]
        kept = []
        for by0, bx0, by1, bx1 in text_boxes(prob):
            b = (
                int(max(0, round(by0 * sy))),
                int(max(0, round(bx0 * sx))),
                int(min(H, round(by1 * sy))),
                int(min(W, round(bx1 * sx))),
            )
            if b[2] - b[0] >= 8 and b[3] - b[1] >= 8:
                kept.append(b)
        kept.sort()
        for b in kept:
            lines.append((name, b, src[b[0] : b[2], b[1] : b[3]]))
        log(f"prepare: {name}: {len(kept)} text boxes")
    return lines


def text_bands(photos, name="text", bands=4):
    """Horizontal bands of the photo `name` (handwritten formulas the detector misses): text-line-like
    crops, non-overlapping, as (photo, box, crop)."""
    out = []
    for n, img in photos:
        if n != name:
            continue
        src = bgr(img)
        H, W = src.shape[:2]
        bh = H // bands
        for i in range(bands):
            out.append((n, (i * bh, 0, (i + 1) * bh, W), src[i * bh : (i + 1) * bh]))
    return out


def box_iou(a, b):
    iy = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iy * ix
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / max(1, area(a) + area(b) - inter)


def line_variants(crop):
    """The line itself and, on lines longer than their window, overlapping windows of 3 and 6 line
    heights (stride half a window): text-line-like crops of the same line."""
    h, w = crop.shape[:2]
    out = [crop]
    for k in (3, 6):
        win = k * h
        if w >= 1.5 * win:
            step = max(1, win // 2)
            for x in range(0, w - win + 1, step):
                out.append(crop[:, x : x + win])
    return out


def save(out_dir, name, arr):
    os.makedirs(out_dir, exist_ok=True)
    p = os.path.join(out_dir, name)
    np.save(p, arr)
    return os.path.abspath(p)


def prepare(args):
    only = set(args.only.split(",")) if args.only else None
    want = lambda m: only is None or m in only  # noqa: E731
    if want("digits"):
        d = os.path.abspath(args.digits)
        calib, ev = np.load(os.path.join(d, "calib.npy")), np.load(os.path.join(d, "eval.npy"))
        emit(
            {
                "model": "digits",
                "task": "classify",
                "onnx": os.path.join(d, "model.onnx"),
                "calib": os.path.join(d, "calib.npy"),
                "eval": os.path.join(d, "eval.npy"),
                "labels": os.path.join(d, "eval_labels.npy"),
                "calib_samples": int(calib.shape[0]),
                "eval_samples": int(ev.shape[0]),
                "source": "examples/digits (scikit-learn digits; seeded split, see make.py)",
            }
        )
    photos = load_photos(args.photos)
    det_model = os.path.abspath(os.path.join(args.models, "ppocrv4_det.onnx"))
    if want("ppocrv4_det"):
        cal, ev = [], []
        for k, (name, img) in enumerate(photos):
            src = bgr(img)
            W = src.shape[1]
            left, right = src[:, : W // 2], src[:, W // 2 :]
            a, b = (left, right) if k % 2 == 0 else (right, left)
            cal += [det_input(v) for v in det_tiles(a)]
            ev += [det_input(v) for v in det_tiles(b)]
        out = os.path.join(args.out, "ppocrv4_det")
        emit(
            {
                "model": "ppocrv4_det",
                "task": "mask",
                "onnx": det_model,
                "calib": save(out, "calib.npy", np.stack(cal)),
                "eval": save(out, "eval.npy", np.stack(ev)),
                "labels": None,
                "calib_samples": len(cal),
                "eval_samples": len(ev),
                "source": f"{len(photos)} photos; per photo one half to calibration, the other to "
                f"evaluation; each half whole, its quadrants and centre, at {DET_SIZE}x{DET_SIZE}",
            }
        )
    if want("ppocrv4_rec") or want("ppocr_mobile_v2_cls"):
        lines = text_lines(det_model, photos)
        if len(lines) < 4:
            raise SystemExit(f"the detector found only {len(lines)} text lines in the photos")
        bands = text_bands(photos)
        # whole lines (and bands) to one side: odd ones to evaluation, even ones to calibration
        cal_crops, ev_crops = [], []
        for group in (lines, bands):
            for i, (_, _, crop) in enumerate(group):
                (ev_crops if i % 2 == 1 else cal_crops).extend(line_variants(crop))
        src_note = (
            f"{len(lines)} text boxes found by FP32 ppocrv4_det on {len(photos)} photos (longer side "
            f"960) and {len(bands)} horizontal bands of text.png (handwriting it misses); odd ones to "
            f"evaluation, even ones to calibration; each one plus windows of 3 and 6 heights"
        )
        for model, task, shape in (
            ("ppocrv4_rec", "ctc", REC_SHAPE),
            ("ppocr_mobile_v2_cls", "direction", CLS_SHAPE),
        ):
            if not want(model):
                continue
            out = os.path.join(args.out, model)
            rec = {
                "model": model,
                "task": task,
                "onnx": os.path.abspath(os.path.join(args.models, f"{model}.onnx")),
                "labels": None,
                "source": src_note + f"; fed at {shape[0]}x{shape[1]}",
            }
            for split, crops in (("calib", cal_crops), ("eval", ev_crops)):
                if task == "direction":
                    # a seeded half of each split rotated by 180 degrees: label 1
                    rng = np.random.default_rng(1 if split == "calib" else 2)
                    rot = np.zeros(len(crops), np.int64)
                    rot[rng.permutation(len(crops))[: len(crops) // 2]] = 1
                    x = np.stack(
                        [line_input(c[::-1, ::-1] if r else c, shape) for c, r in zip(crops, rot)]
                    )
                    if split == "eval":
                        rec["labels"] = save(out, "eval_labels.npy", rot)
                        rec["note"] = "label 1 = rotated 180 degrees (PaddleOCR's '180')"
                else:
                    x = np.stack([line_input(c, shape) for c in crops])
                rec[split] = save(out, f"{split}.npy", x)
                rec[f"{split}_samples"] = int(x.shape[0])
            emit(rec)
    return 0


# ----------------------------------------------------------------------------- quantize


def quantize(args):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from ort_reader import SampleReader

    logging.getLogger().setLevel(logging.ERROR)
    os.makedirs(args.out_dir, exist_ok=True)
    pre = os.path.join(args.out_dir, "preprocessed.onnx")
    # As ORT recommends: its preprocessing (shape inference, graph optimization that also turns
    # Constant-node weights into initializers) first. When its symbolic shape inference gives up
    # (it does on the PP-OCR models), retry without it, as its error message suggests; only when
    # that fails too is the original model quantized. Either way it is reported.
    pre_error = None
    src = pre
    try:
        quant_pre_process(args.model, pre)
    except Exception as e:  # noqa: BLE001 - reported
        first = f"{type(e).__name__}: {e}".strip()
        try:
            quant_pre_process(args.model, pre, skip_symbolic_shape=True)
            pre_error = f"quant_pre_process failed ({first}); done with skip_symbolic_shape=True"
        except Exception as e2:  # noqa: BLE001 - reported, then the original model is quantized
            pre_error = f"quant_pre_process failed ({first}; without symbolic shapes: {e2}); quantizing the original model"
            src = args.model
        log(pre_error)
    name = session(src).get_inputs()[0].name
    x = np.load(args.calib)
    methods = [
        ("minmax", CalibrationMethod.MinMax),
        ("entropy", CalibrationMethod.Entropy),
        ("percentile", CalibrationMethod.Percentile),
    ]
    for mname, method in methods:
        for per_channel in (False, True):
            for aname, act in (("u8", QuantType.QUInt8), ("s8", QuantType.QInt8)):
                cfg = f"ort_{mname}_{'per_channel' if per_channel else 'per_tensor'}_{aname}"
                rec = {
                    "config": cfg,
                    "calibrate_method": mname,
                    "per_channel": per_channel,
                    "activation_type": "QUInt8" if aname == "u8" else "QInt8",
                    "weight_type": "QInt8",
                    "reduce_range": False,
                    "ort_default": mname == "minmax" and not per_channel and aname == "u8",
                    "preprocess_error": pre_error,
                }
                out = os.path.join(args.out_dir, f"{cfg}.onnx")
                log(f"quantize: {cfg}")
                try:
                    quantize_static(
                        src,
                        out,
                        SampleReader.from_arrays({name: x}),
                        quant_format=QuantFormat.QDQ,
                        per_channel=per_channel,
                        reduce_range=False,
                        activation_type=act,
                        weight_type=QuantType.QInt8,
                        calibrate_method=method,
                    )
                except Exception as e:  # noqa: BLE001 - reported per configuration
                    emit({**rec, "ok": False, "error": f"quantize_static failed: {type(e).__name__}: {e}"})
                    continue
                try:
                    session(out)
                except Exception as e:  # noqa: BLE001
                    emit({**rec, "ok": False, "error": f"ORT cannot load its own output: {e}"})
                    continue
                emit({**rec, "ok": True, "path": os.path.abspath(out)})
    return 0


# ----------------------------------------------------------------------------- evaluate


def ctc_decode(probs):
    """Greedy CTC: argmax per step, collapse repeats, drop blank (0). One tuple per sample."""
    idx = probs.argmax(axis=-1)
    out = []
    for row in idx:
        s, prev = [], -1
        for c in row:
            c = int(c)
            if c != prev and c != 0:
                s.append(c)
            prev = c
        out.append(tuple(s))
    return out


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def sqnr_db(ref, out):
    ref = ref.astype(np.float64)
    err = float(((ref - out.astype(np.float64)) ** 2).sum())
    if err == 0.0:
        return None  # identical: infinite
    return 10.0 * math.log10(float((ref**2).sum()) / err)


def evaluate(args):
    x = np.load(args.eval)
    labels = np.load(args.labels).reshape(-1) if args.labels else None
    cands = []
    for c in args.candidate:
        name, _, path = c.partition("=")
        cands.append((name, path))
    ref = run_batched(session(args.fp32), x)
    ref_arg = ref.reshape(ref.shape[0], -1, ref.shape[-1]).argmax(-1) if args.task in ("classify", "direction") else None
    ref_str = ctc_decode(ref) if args.task == "ctc" else None
    ref_mask = ref > DET_THRESH if args.task == "mask" else None
    for name, path in cands:
        rec = {"candidate": name, "path": path}
        try:
            out = run_batched(session(path), x)
        except Exception as e:  # noqa: BLE001 - reported per candidate
            emit({**rec, "error": f"ONNX Runtime failed: {e}"})
            continue
        if out.shape != ref.shape:
            emit({**rec, "error": f"output shape {list(out.shape)} != FP32's {list(ref.shape)}"})
            continue
        rec["sqnr_db"] = sqnr_db(ref, out)
        if args.task in ("classify", "direction"):
            arg = out.reshape(out.shape[0], -1, out.shape[-1]).argmax(-1)
            agree = float((arg == ref_arg).mean())
            rec["top1_agreement" if args.task == "classify" else "agreement"] = agree
            if labels is not None:
                rec["accuracy"] = float((arg[:, 0] == labels).mean())
        elif args.task == "ctc":
            strs = ctc_decode(out)
            rec["string_agreement"] = float(np.mean([a == b for a, b in zip(strs, ref_str)]))
            rec["mean_edit_distance"] = float(
                np.mean([edit_distance(a, b) / max(1, len(a), len(b)) for a, b in zip(strs, ref_str)])
            )
            if name == "fp32":
                rec["nonempty_strings"] = int(sum(1 for s in ref_str if s))
                rec["mean_string_length"] = float(np.mean([len(s) for s in ref_str]))
        elif args.task == "mask":
            m = out > DET_THRESH
            inter = np.logical_and(m, ref_mask).sum()
            union = np.logical_or(m, ref_mask).sum()
            rec["mask_iou"] = float(inter / union) if union else 1.0
            rec["mask_pixel_agreement"] = float((m == ref_mask).mean())
            if name == "fp32":
                rec["text_pixel_fraction"] = float(ref_mask.mean())
        emit(rec)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--photos", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--digits", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--only", default="")
    q = sub.add_parser("quantize")
    q.add_argument("--model", required=True)
    q.add_argument("--calib", required=True)
    q.add_argument("--out-dir", required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("--task", required=True, choices=["classify", "direction", "ctc", "mask"])
    e.add_argument("--fp32", required=True)
    e.add_argument("--eval", required=True)
    e.add_argument("--labels")
    e.add_argument("--candidate", action="append", default=[])
    args = ap.parse_args()
    try:
        return {"prepare": prepare, "quantize": quantize, "evaluate": evaluate}[args.cmd](args)
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - a clear message for the xtask
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
