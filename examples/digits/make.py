#!/usr/bin/env python3
"""Builds the bundled digits example: a small CNN trained here, with numpy only, on scikit-learn's
labelled 8x8 handwritten digits (`sklearn.datasets.load_digits`, 1797 images that ship inside the
scikit-learn wheel, so nothing is downloaded), exported to ONNX, with its calibration and evaluation
data.

The network (3,818 parameters):

    input [N, 1, 8, 8] (pixel / 16, in [0, 1])
    conv1  Conv 1->8,  3x3, pad 1, stride 1  + Relu   -> [N, 8, 8, 8]
    conv2  Conv 8->16, 3x3, pad 1, stride 2  + Relu   -> [N, 16, 4, 4]
    Flatten                                          -> [N, 256]
    fc     Gemm 256->10                              -> logits [N, 10]

The forward and backward passes are written below (im2col convolutions, softmax cross-entropy);
training is Adam (cosine-decayed learning rate, weight decay) with a fixed seed, in float64, on one
BLAS thread, over the training images and their copies shifted by one pixel in each direction; the
weights are rounded to float32 at the end. The split of the 1797 samples is fixed by the seed: 300 held out for evaluation, 200 for
calibration (not trained on either), the other 1297 for training.

Writes, next to this script:
    model.onnx        opset 13, input "input" [batch, 1, 8, 8], output "logits" [batch, 10]
    calib.npy         float32 [200, 1, 8, 8]
    eval.npy          float32 [300, 1, 8, 8]
    eval_labels.npy   int64   [300]

It checks the model with onnx.checker, runs it in ONNX Runtime and fails unless ONNX Runtime's
predictions (and so its accuracy) equal those of the numpy float32 forward pass.

Deterministic: running it twice with the pinned venv gives byte-identical files. Run it from the
repository root with the reference venv (`cargo xtask venv` makes it):

    .venv/bin/python examples/digits/make.py
"""

import os

# One BLAS thread, set before numpy loads: a threaded reduction could change the last bits.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261127
N_EVAL = 300
N_CALIB = 200
EPOCHS = 20
BATCH = 32
LR = 3e-3
WEIGHT_DECAY = 1e-3


# ---------------------------------------------------------------------------------------------
# Data


def load_split():
    """The digits as [N, 1, 8, 8] in [0, 1] and int64 labels, split by a seeded permutation."""
    digits = load_digits()
    x = (digits.images.astype(np.float64) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(y))
    ev, ca, tr = perm[:N_EVAL], perm[N_EVAL : N_EVAL + N_CALIB], perm[N_EVAL + N_CALIB :]
    return (x[tr], y[tr]), (x[ca], y[ca]), (x[ev], y[ev])


def shift(x, dy, dx):
    """Images moved by (dy, dx) pixels, zero-filled."""
    out = np.zeros_like(x)
    h, w = x.shape[2:]
    out[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def augment(x, y):
    """The training set plus its copies shifted by one pixel up, down, left and right."""
    moves = [(0, 1), (0, -1), (1, 0), (-1, 0)]
    xa = np.concatenate([x] + [shift(x, dy, dx) for dy, dx in moves])
    return xa, np.tile(y, 1 + len(moves))


# ---------------------------------------------------------------------------------------------
# The network: forward and backward passes


def im2col(x, k, stride, pad):
    """[N, C, H, W] -> columns [N, OH, OW, C*k*k] of every k x k window (zero padding)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # [N, C, OH, OW, k, k]
    n, c, oh, ow = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n, oh, ow, c * k * k)


def col2im(dcols, x_shape, k, stride, pad):
    """The adjoint of im2col: scatters column gradients [N, OH, OW, C*k*k] back to [N, C, H, W]."""
    n, c, h, w = x_shape
    oh, ow = dcols.shape[1:3]
    d = dcols.reshape(n, oh, ow, c, k, k)
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += d[
                :, :, :, :, i, j
            ].transpose(0, 3, 1, 2)
    return dxp[:, :, pad : pad + h, pad : pad + w]


def conv_forward(x, w, b, stride, pad):
    cout, _, k, _ = w.shape
    cols = im2col(x, k, stride, pad)
    out = cols @ w.reshape(cout, -1).T + b  # [N, OH, OW, Cout]
    return out.transpose(0, 3, 1, 2), cols


def conv_backward(dout, cols, x_shape, w, stride, pad, need_dx):
    cout, _, k, _ = w.shape
    d = dout.transpose(0, 2, 3, 1)  # [N, OH, OW, Cout]
    d2 = d.reshape(-1, cout)
    dw = (d2.T @ cols.reshape(-1, cols.shape[-1])).reshape(w.shape)
    db = d2.sum(axis=0)
    dx = None
    if need_dx:
        dcols = d @ w.reshape(cout, -1)
        dx = col2im(dcols, x_shape, k, stride, pad)
    return dw, db, dx


def init_params(rng):
    def he(shape, fan_in):
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    return {
        "conv1.w": he((8, 1, 3, 3), 9),
        "conv1.b": np.zeros(8),
        "conv2.w": he((16, 8, 3, 3), 72),
        "conv2.b": np.zeros(16),
        "fc.w": he((256, 10), 256) * 0.5,  # Gemm B as [K, N]
        "fc.b": np.zeros(10),
    }


def forward(p, x):
    """Logits and the values the backward pass needs."""
    c1, cols1 = conv_forward(x, p["conv1.w"], p["conv1.b"], 1, 1)
    r1 = np.maximum(c1, 0)
    c2, cols2 = conv_forward(r1, p["conv2.w"], p["conv2.b"], 2, 1)
    r2 = np.maximum(c2, 0)
    f = r2.reshape(len(x), -1)
    logits = f @ p["fc.w"] + p["fc.b"]
    return logits, (x, cols1, c1, r1, cols2, c2, f)


def loss_and_grads(p, x, y):
    logits, (x, cols1, c1, r1, cols2, c2, f) = forward(p, x)
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(prob[np.arange(n), y]).mean()
    dlogits = prob
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    g = {"fc.w": f.T @ dlogits, "fc.b": dlogits.sum(axis=0)}
    dr2 = (dlogits @ p["fc.w"].T).reshape(c2.shape)
    dc2 = dr2 * (c2 > 0)
    g["conv2.w"], g["conv2.b"], dr1 = conv_backward(dc2, cols2, r1.shape, p["conv2.w"], 2, 1, True)
    dc1 = dr1 * (c1 > 0)
    g["conv1.w"], g["conv1.b"], _ = conv_backward(dc1, cols1, x.shape, p["conv1.w"], 1, 1, False)
    return loss, g


def train(xtr, ytr, rng):
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    step = 0
    for epoch in range(EPOCHS):
        lr = LR * 0.5 * (1 + np.cos(np.pi * epoch / EPOCHS))  # cosine decay
        order = rng.permutation(len(ytr))
        total = 0.0
        for s in range(0, len(order), BATCH):
            idx = order[s : s + BATCH]
            loss, g = loss_and_grads(p, xtr[idx], ytr[idx])
            total += loss * len(idx)
            step += 1
            for k in p:
                gk = g[k] + WEIGHT_DECAY * p[k] if k.endswith(".w") else g[k]
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                mh = m[k] / (1 - b1**step)
                vh = v[k] / (1 - b2**step)
                p[k] -= lr * mh / (np.sqrt(vh) + eps)
        if epoch % 5 == 4 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1:3d}: train loss {total / len(ytr):.4f}")
    return p


# ---------------------------------------------------------------------------------------------
# Export and checks


def export(p32, path):
    inits = [numpy_helper.from_array(v, k) for k, v in p32.items()]
    nodes = [
        helper.make_node(
            "Conv", ["input", "conv1.w", "conv1.b"], ["conv1_out"], name="conv1",
            kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1],
        ),
        helper.make_node("Relu", ["conv1_out"], ["relu1_out"], name="relu1"),
        helper.make_node(
            "Conv", ["relu1_out", "conv2.w", "conv2.b"], ["conv2_out"], name="conv2",
            kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2],
        ),
        helper.make_node("Relu", ["conv2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("Flatten", ["relu2_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qtool-example-digits"
    )
    model.ir_version = 8
    model.doc_string = (
        "8x8 digit classifier trained by examples/digits/make.py on sklearn's load_digits; "
        "input = pixel / 16, output = logits of the classes 0..9"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def main():
    (xtr, ytr), (xca, _), (xev, yev) = load_split()
    rng = np.random.default_rng(SEED + 1)
    p = train(*augment(xtr, ytr), rng)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}

    xev32 = xev.astype(np.float32)
    logits_np, _ = forward(p32, xev32)
    pred_np = logits_np.argmax(axis=1)
    acc_np = float((pred_np == yev).mean())
    train_acc = float((forward(p32, xtr.astype(np.float32))[0].argmax(axis=1) == ytr).mean())

    model_path = os.path.join(HERE, "model.onnx")
    export(p32, model_path)
    np.save(os.path.join(HERE, "calib.npy"), xca.astype(np.float32))
    np.save(os.path.join(HERE, "eval.npy"), xev32)
    np.save(os.path.join(HERE, "eval_labels.npy"), yev.astype(np.int64))

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    (logits_ort,) = sess.run(["logits"], {"input": xev32})
    pred_ort = logits_ort.argmax(axis=1)
    acc_ort = float((pred_ort == yev).mean())
    max_diff = float(np.abs(logits_ort - logits_np).max())
    print(f"train accuracy {train_acc:.4f} ({len(ytr)} samples)")
    print(f"eval accuracy: numpy {acc_np:.4f}, ONNX Runtime {acc_ort:.4f} ({len(yev)} samples)")
    print(f"max |logit difference| numpy vs ONNX Runtime: {max_diff:.2e}")
    if not np.array_equal(pred_np, pred_ort):
        raise SystemExit("ONNX Runtime's predictions differ from the numpy model's")
    if acc_np < 0.95:
        raise SystemExit(f"eval accuracy {acc_np:.4f} is below the 0.95 this example promises")
    print("wrote model.onnx, calib.npy, eval.npy, eval_labels.npy")


if __name__ == "__main__":
    main()
