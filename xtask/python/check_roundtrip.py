#!/usr/bin/env python3
"""Check that SAVED is a faithful re-serialization of ORIG.

Usage: check_roundtrip.py ORIG SAVED [--arrays-only]

Both models are loaded with onnx (external data included). The check passes when
  1. onnx.checker.check_model(SAVED, full_check=True) passes whenever it passes on ORIG
     (both results are reported),
  2. the two ModelProtos are equal as messages (else the path of the first differing field is
     printed); skipped with --arrays-only. An explicit `data_location = DEFAULT`, which onnx.load
     leaves on tensors whose data it read from external files, is cleared first (with a note), so
     that external-data and inline layouts of the same model compare equal,
  3. every initializer (main graph and subgraphs, matched by name) has the same dtype, shape and
     raw bytes (via onnx.numpy_helper.to_array) in both.
Exit code 0 on success, 1 on failure (with a one-line reason on the last line), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys

import onnx
from google.protobuf.message import Message
from onnx import numpy_helper


def checker(path: str) -> str | None:
    """None when the full checker passes, else its error message (first line)."""
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # noqa: BLE001 - any checker failure is a result
        msg = str(e).strip().splitlines()
        return f"{type(e).__name__}: {msg[0] if msg else ''}"
    return None


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def value_diff(va, vb) -> str:
    if isinstance(va, (bytes, str)) and isinstance(vb, (bytes, str)):
        n = min(len(va), len(vb))
        i = next((k for k in range(n) if va[k] != vb[k]), n)
        return (
            f"{type(va).__name__} of length {len(va)} vs {len(vb)}, first difference at offset {i}: "
            f"{short(va[i : i + 16])} != {short(vb[i : i + 16])}"
        )
    return f"{short(va)} != {short(vb)}"


def has_field(msg: Message, name: str) -> bool:
    try:
        return msg.HasField(name)
    except ValueError:  # a scalar without presence
        return False


def is_repeated(fd) -> bool:
    # protobuf >= 6 has is_repeated; older versions only have label.
    if hasattr(fd, "is_repeated"):
        return bool(fd.is_repeated)
    return fd.label == fd.LABEL_REPEATED


def first_diff(a: Message, b: Message, path: str = "model") -> str | None:
    """The path of the first field where two messages differ, with both values, or None."""
    if a == b:
        return None
    fields = {}
    for fd, _ in a.ListFields():
        fields[fd.number] = fd
    for fd, _ in b.ListFields():
        fields[fd.number] = fd
    for number in sorted(fields):
        fd = fields[number]
        va = getattr(a, fd.name)
        vb = getattr(b, fd.name)
        sub = f"{path}.{fd.name}"
        if is_repeated(fd):
            for i in range(min(len(va), len(vb))):
                if fd.message_type is not None:
                    d = first_diff(va[i], vb[i], f"{sub}[{i}]")
                    if d:
                        return d
                elif va[i] != vb[i]:
                    return f"{sub}[{i}]: {value_diff(va[i], vb[i])}"
            if len(va) != len(vb):
                return f"{sub}: length {len(va)} != {len(vb)}"
        elif fd.message_type is not None:
            has_a = a.HasField(fd.name)
            has_b = b.HasField(fd.name)
            if has_a != has_b:
                return f"{sub}: present in {'ORIG' if has_a else 'SAVED'} only"
            d = first_diff(va, vb, sub)
            if d:
                return d
        else:
            has_a = has_field(a, fd.name)
            has_b = has_field(b, fd.name)
            if va != vb:
                return f"{sub}: {value_diff(va, vb)}"
            if has_a != has_b:
                side = "ORIG" if has_a else "SAVED"
                return f"{sub}: set explicitly (to {short(va)}) in {side} only"
    # Equal known fields: the difference is in unknown fields.
    return f"{path}: unknown fields differ"


def initializers(graph: onnx.GraphProto, prefix: str, acc: dict) -> None:
    for t in graph.initializer:
        acc[f"{prefix}{t.name}"] = t
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                initializers(attr.g, f"{prefix}{node.name or node.op_type}/{attr.name}/", acc)
            for i, g in enumerate(attr.graphs):
                initializers(g, f"{prefix}{node.name or node.op_type}/{attr.name}[{i}]/", acc)


def normalize_loaded_external_data(model: onnx.ModelProto) -> int:
    """onnx.load(load_external_data=True) leaves `data_location = DEFAULT` explicitly set on every
    tensor whose data it read from an external file. Clear that so that a model saved with external
    data compares equal to the same model saved inline. Returns how many tensors were touched."""
    acc: dict = {}
    initializers(model.graph, "", acc)
    n = 0
    for t in acc.values():
        if (
            t.HasField("data_location")
            and t.data_location == onnx.TensorProto.DEFAULT
            and not t.external_data
        ):
            t.ClearField("data_location")
            n += 1
    return n


def compare_initializers(a: onnx.ModelProto, b: onnx.ModelProto) -> str | None:
    ia: dict = {}
    ib: dict = {}
    initializers(a.graph, "", ia)
    initializers(b.graph, "", ib)
    if list(ia) != list(ib):
        only_a = sorted(set(ia) - set(ib))
        only_b = sorted(set(ib) - set(ia))
        if only_a or only_b:
            return f"initializer names differ: ORIG only {only_a[:5]}, SAVED only {only_b[:5]}"
        return "initializer order differs"
    for name, ta in ia.items():
        xa = numpy_helper.to_array(ta)
        xb = numpy_helper.to_array(ib[name])
        if xa.dtype != xb.dtype or xa.shape != xb.shape:
            return f"initializer {name!r}: {xa.dtype}{list(xa.shape)} != {xb.dtype}{list(xb.shape)}"
        if xa.tobytes() != xb.tobytes():
            return f"initializer {name!r}: bytes differ"
    return None


def check_pair(orig_path: str, saved_path: str, arrays_only: bool, out) -> bool:
    """Runs the three checks on one pair, printing to `out`; True when the round trip is faithful."""
    c_orig = checker(orig_path)
    c_saved = checker(saved_path)
    print(f"checker ORIG:  {'ok' if c_orig is None else c_orig}", file=out)
    print(f"checker SAVED: {'ok' if c_saved is None else c_saved}", file=out)
    if c_orig is None and c_saved is not None:
        print(f"FAIL: checker passes on ORIG but not on SAVED: {c_saved}", file=out)
        return False

    orig = onnx.load(orig_path, load_external_data=True)
    saved = onnx.load(saved_path, load_external_data=True)
    for label, model in (("ORIG", orig), ("SAVED", saved)):
        n = normalize_loaded_external_data(model)
        if n:
            print(f"note: {label}: cleared data_location=DEFAULT left by loading external data on {n} tensors", file=out)

    if not arrays_only:
        if orig == saved:
            print("messages: equal", file=out)
        else:
            print(f"FAIL: ModelProtos differ at {first_diff(orig, saved)}", file=out)
            return False

    diff = compare_initializers(orig, saved)
    if diff is not None:
        print(f"FAIL: {diff}", file=out)
        return False
    n: dict = {}
    initializers(orig.graph, "", n)
    print(f"OK: round trip faithful ({len(n)} initializers identical)", file=out)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description="check that SAVED re-serializes ORIG faithfully")
    ap.add_argument("orig", nargs="?")
    ap.add_argument("saved", nargs="?")
    ap.add_argument(
        "--arrays-only",
        action="store_true",
        help="skip the message equality check (initializer values are still compared)",
    )
    ap.add_argument(
        "--pairs",
        help="a file with one 'ORIG<TAB>SAVED' pair per line: check them all in one process and print "
        "one line per pair; exit 1 if any fails",
    )
    args = ap.parse_args()

    if args.pairs:
        import io

        failed = 0
        total = 0
        with open(args.pairs, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    continue
                orig_path, saved_path = line.split("\t")
                total += 1
                buf = io.StringIO()
                try:
                    ok = check_pair(orig_path, saved_path, args.arrays_only, buf)
                except Exception as e:  # noqa: BLE001 - report and go on
                    ok = False
                    print(f"FAIL: {type(e).__name__}: {e}", file=buf)
                last = buf.getvalue().strip().splitlines()[-1]
                if not ok:
                    failed += 1
                    print(f"{orig_path}: {last}")
        print(f"{total - failed} passed, {failed} failed")
        return 1 if failed else 0

    if not args.orig or not args.saved:
        ap.error("ORIG and SAVED are required without --pairs")
    return 0 if check_pair(args.orig, args.saved, args.arrays_only, sys.stdout) else 1


if __name__ == "__main__":
    sys.exit(main())
