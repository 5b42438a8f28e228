"""A corpus of hostile input, generated at test time (no binary blobs in the repository):
broken, lying, oversized and empty study files, and malformed engine files. Imported by
the tests in ``test_hostile.py``; each builder returns what it wrote and what ra-sdk must
answer for it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ra_sdk.io.write import write_dicom, write_nifti, write_png

PYDICOM_FILES: Path | None
try:
    import pydicom.data

    PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
except ImportError:  # pragma: no cover - pydicom is a core dependency
    PYDICOM_FILES = None


def good_studies(root: Path) -> list[str]:
    """Six valid studies of every reader: PNG (8 and 16 bit), a DICOM image, a 3-slice
    DICOM series, a NIfTI volume. Returns their study ids."""
    from ra_sdk.data.augment import normal_batch

    imgs = normal_batch("test", 8, start=300)
    write_png(root / "png" / "a.png", (imgs[0] * 255).astype(np.uint8))
    write_png(root / "png" / "b16.png", (imgs[1] * 60000).astype(np.uint16))
    write_dicom(root / "dcm" / "one.dcm", (imgs[2] * 3000).astype(np.uint16), patient_id="G1", study_uid="1.9.1", series_uid="1.9.1.1")
    for z in range(3):
        write_dicom(root / "series" / f"s{z}.dcm", (imgs[3 + z] * 3000).astype(np.uint16), patient_id="G2", study_uid="1.9.2", series_uid="1.9.2.1", instance=z + 1, position_z=float(z))
    write_nifti(root / "nii" / "vol.nii.gz", np.stack([imgs[6], imgs[7], imgs[6]]) * 1000)
    return ["dcm/one.dcm", "nii/vol.nii.gz", "png/a.png", "png/b16.png", "series/1.9.2.1"]


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def _tiff(w: int, h: int, *, loop: bool = False) -> bytes:
    """A little-endian TIFF header with one directory: ImageWidth, ImageLength (and a
    next-directory offset pointing at itself with ``loop``)."""
    ifd_at = 8
    entries = struct.pack("<HHII", 256, 4, 1, w) + struct.pack("<HHII", 257, 4, 1, h)
    nxt = ifd_at if loop else 0
    return b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", 2) + entries + struct.pack("<I", nxt) + bytes(64)


def _dicom_bytes(path: Path, pixels: np.ndarray, **kw: object) -> Path:
    return write_dicom(path, pixels, patient_id="BAD", study_uid="1.8.1", series_uid=f"1.8.1.{abs(hash(path.name)) % 10**8}", **kw)  # type: ignore[arg-type]


def bad_inputs(root: Path) -> dict[str, str]:
    """At least 40 kinds of bad input under ``root``; returns study id -> expected error kind."""
    import cv2
    import nibabel as nib
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ok16 = rng.integers(0, 4000, (64, 64)).astype(np.uint16)
    ok8 = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    e: dict[str, str] = {}

    def put(name: str, data: bytes, kind: str) -> None:
        (root / name).write_bytes(data)
        e[name] = kind

    # ---- empty, truncated, not what the name says
    put("empty.dcm", b"", "corrupt")
    put("empty.png", b"", "corrupt")
    put("zero.nii", b"", "corrupt")
    put("trunc.png", cv2.imencode(".png", ok8)[1].tobytes()[:60], "corrupt")
    put("trunc.jpg", cv2.imencode(".jpg", ok8)[1].tobytes()[:50], "corrupt")
    put("text.dcm", b"this is not DICOM\n" * 20, "corrupt")
    put("text.png", b"not an image at all\n" * 10, "corrupt")
    put("random.jpg", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "corrupt")
    put("junk.tif", b"II*\x00" + bytes(range(200)), "corrupt")
    put("bad.nii.gz", b"\x1f\x8b\x08\x00garbage", "corrupt")
    put("bad\nname.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt")
    f = _dicom_bytes(root / "trunc.dcm", ok16)
    f.write_bytes(f.read_bytes()[:-4000])
    e["trunc.dcm"] = "corrupt"
    f = _dicom_bytes(root / "trunc-header.dcm", ok16)
    raw = f.read_bytes()
    f.write_bytes(raw[: raw.rfind(b"\xe0\x7f\x10\x00")])  # cut before the Pixel Data element
    e["trunc-header.dcm"] = "corrupt"
    nib.save(nib.Nifti1Image(rng.random((32, 32, 8)).astype(np.float32), np.eye(4)), str(root / "trunc.nii"))
    (root / "trunc.nii").write_bytes((root / "trunc.nii").read_bytes()[:-9000])
    e["trunc.nii"] = "corrupt"

    # ---- headers that lie, or describe something ra-sdk must refuse
    put("bomb-header.png", _png_header(100_000, 100_000), "too-large")  # 57 bytes, 10^10 pixels
    put("zero-size.png", _png_header(0, 0), "corrupt")
    put("huge.tif", _tiff(100_000, 100_000), "too-large")
    put("loop.tif", _tiff(64, 64, loop=True), "corrupt")
    put("huge.jpg", b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x01\x01\x11\x00" + bytes(64), "too-large")
    put("huge.bmp", b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHII", 40, 100_000, 100_000, 1, 8, 0, 0) + bytes(64), "too-large")
    f = _dicom_bytes(root / "huge.dcm", ok16[:8, :8])
    ds = pydicom.dcmread(f)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 10
    ds.save_as(f)
    e["huge.dcm"] = "too-large"
    f = _dicom_bytes(root / "bits8-over-16bit.dcm", ok16)
    ds = pydicom.dcmread(f)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.save_as(f)
    e["bits8-over-16bit.dcm"] = "corrupt"
    f = _dicom_bytes(root / "rows0.dcm", ok16)
    ds = pydicom.dcmread(f)
    ds.Rows = 0
    ds.save_as(f)
    e["rows0.dcm"] = "corrupt"
    # a deflated dataset of a few KB that inflates to 72 MB (a decompression bomb at this budget)
    f = _dicom_bytes(root / "deflate-bomb.dcm", np.zeros((6000, 6000), np.uint16))
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(f, enforce_file_format=True)
    e["deflate-bomb.dcm"] = "too-large"
    # a .nii.gz whose header claims 4096 x 4096 x 64 float32 (4 GiB) over a few bytes of data
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4096, 4096, 64))
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 352
    (root / "gz-bomb.nii.gz").write_bytes(gzip.compress(hdr.binaryblock + bytes(4) + bytes(4096)))
    e["gz-bomb.nii.gz"] = "too-large"
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(root / "rgb24.nii.gz"))
    e["rgb24.nii.gz"] = "unsupported-format"
    nib.save(nib.Nifti1Image(rng.random((16, 16, 4)).astype(np.float32), np.eye(4)), str(root / "nan-affine.nii"))
    raw = bytearray((root / "nan-affine.nii").read_bytes())
    raw[280:284] = struct.pack("<f", float("nan"))  # srow_x[0]
    (root / "nan-affine.nii").write_bytes(bytes(raw))
    e["nan-affine.nii"] = "corrupt"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 4), np.float32), np.eye(4)), str(root / "fmri.nii.gz"))
    e["fmri.nii.gz"] = "unsupported-format"
    nib.save(nib.Nifti1Image(np.zeros((8, 2, 8), np.float32), np.eye(4)), str(root / "dim0.nii"))
    raw = bytearray((root / "dim0.nii").read_bytes())
    raw[44:46] = struct.pack("<h", 0)  # dim[2] = 0
    (root / "dim0.nii").write_bytes(bytes(raw))
    e["dim0.nii"] = "unsupported-format"

    # ---- no usable signal: a failure, never a normal
    write_png(root / "constant.png", np.full((64, 64), 90, np.uint8))
    e["constant.png"] = "no-signal"
    write_png(root / "one-pixel.png", np.array([[7]], np.uint8))
    e["one-pixel.png"] = "no-signal"
    write_png(root / "eight.png", ok8[:8, :8])
    e["eight.png"] = "no-signal"
    _dicom_bytes(root / "zeros.dcm", np.zeros((64, 64), np.uint16))
    e["zeros.dcm"] = "no-signal"
    nib.save(nib.Nifti1Image(np.full((16, 16, 6), np.nan, np.float32), np.eye(4)), str(root / "all-nan.nii.gz"))
    e["all-nan.nii.gz"] = "no-signal"
    cv2.imwrite(str(root / "nan.tif"), np.full((16, 16), np.nan, np.float32))
    e["nan.tif"] = "corrupt"

    # ---- not images, unsupported codecs, damaged codestreams (pydicom's own files)
    if PYDICOM_FILES is not None:
        shutil.copy(PYDICOM_FILES / "test-SR.dcm", root / "report-sr.dcm")
        e["report-sr.dcm"] = "not-an-image"
        shutil.copy(PYDICOM_FILES / "rtplan.dcm", root / "rtplan.dcm")
        e["rtplan.dcm"] = "not-an-image"
        shutil.copy(PYDICOM_FILES / "JPEG-lossy.dcm", root / "codec.dcm")
        e["codec.dcm"] = "unsupported-codec"
        shutil.copy(PYDICOM_FILES / "badVR.dcm", root / "badvr.dcm")
        e["badvr.dcm"] = "corrupt"
        shutil.copy(PYDICOM_FILES / "nested_priv_SQ.dcm", root / "nopixels-size.dcm")
        e["nopixels-size.dcm"] = "corrupt"
        e["j2k-broken.dcm"] = "corrupt"
        (root / "j2k-broken.dcm").write_bytes(broken_j2k())

    # ---- not regular files: a FIFO, a device, a broken link (rows, never a hang)
    os.mkfifo(root / "fifo.dcm")
    e["fifo.dcm"] = "no-access"
    os.symlink("/dev/zero", root / "devzero.png")
    e["devzero.png"] = "no-access"
    os.symlink(root / "does-not-exist.png", root / "dangling.png")
    e["dangling.png"] = "no-access"
    return e


def broken_j2k() -> bytes:
    """pydicom's MR_small_jp2klossless.dcm with the middle of its codestream overwritten."""
    import pydicom
    from pydicom.encaps import generate_frames

    assert PYDICOM_FILES is not None
    raw = bytearray((PYDICOM_FILES / "MR_small_jp2klossless.dcm").read_bytes())
    frame = next(generate_frames(pydicom.dcmread(PYDICOM_FILES / "MR_small_jp2klossless.dcm").PixelData, number_of_frames=1))
    pos = bytes(raw).find(frame[:32])
    n = len(frame)
    raw[pos + n // 4 : pos + n // 4 + n // 2] = b"\xff" * (n // 2)
    return bytes(raw)


def odd_but_valid(root: Path) -> dict[str, str]:
    """Files that look odd but are images: study id -> a note their row must carry."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    ramp = np.tile(np.arange(40, dtype=np.uint8) * 5, (40, 1))
    cv2.imwrite(str(root / "rgba.png"), np.dstack([ramp, ramp // 2, 255 - ramp, np.full((40, 40), 255, np.uint8)]))
    out["rgba.png"] = "alpha channel dropped"
    pages = [np.roll(ramp, k, 1) for k in range(3)]
    ok, buf = cv2.imencodemulti(".tiff", pages)
    assert ok
    (root / "pages.tif").write_bytes(buf.tobytes())
    out["pages.tif"] = "multi-page TIFF: 3 pages screened as slices"
    (root / "jpeg-named.png").write_bytes(cv2.imencode(".jpg", np.roll(ramp, 3, 0))[1].tobytes())
    out["jpeg-named.png"] = ""
    if PYDICOM_FILES is not None:
        shutil.copy(PYDICOM_FILES / "examples_palette.dcm", root / "palette.dcm")
        out["palette.dcm"] = "palette colour applied"
    return out


# ------------------------------------------------------------------------------ engines
def _members(engine: Path) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(engine) as zf:
        meta = json.loads(zf.read("meta.json"))
        return meta, {n: zf.read(n) for n in zf.namelist() if n != "meta.json"}


def _zip(path: Path, meta: object, members: dict[str, bytes], *, meta_bytes: bytes | None = None) -> Path:
    """meta.json deflated (a bomb in it stays small on disk), networks stored."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.json", meta_bytes if meta_bytes is not None else json.dumps(meta), compress_type=zipfile.ZIP_DEFLATED)
        for n, d in members.items():
            zf.writestr(n, d, compress_type=zipfile.ZIP_STORED)
    return path


def _declare_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size the zip directory declares for ``member``."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    pos = 0
    while True:
        pos = bytes(raw).find(b"PK\x01\x02", pos)
        if pos < 0:
            raise ValueError(member)
        n_len = struct.unpack("<H", raw[pos + 28 : pos + 30])[0]
        if bytes(raw[pos + 46 : pos + 46 + n_len]) == name:
            raw[pos + 24 : pos + 28] = struct.pack("<I", size)
            break
        pos += 4
    path.write_bytes(bytes(raw))


def malformed_engines(folder: Path, good: Path) -> dict[str, str]:
    """At least 30 malformed engine files made from the good engine ``good``; returns
    file name -> a text the one-line error must contain."""
    from ra_sdk.engine import sha256

    folder.mkdir(parents=True, exist_ok=True)
    meta, members = _members(good)
    out: dict[str, str] = {}

    def variant(name: str, change: object, expect: str) -> None:
        m = json.loads(json.dumps(meta))
        change(m)  # type: ignore[operator]
        _zip(folder / name, m, members)
        out[name] = expect

    def setp(*keys: str, value: object):
        def f(m: dict) -> None:
            d = m
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value
        return f

    out["missing.onnx-bundle"] = "no such engine file"
    (folder / "a-folder.onnx-bundle").mkdir()
    out["a-folder.onnx-bundle"] = "is a folder"
    os.mkfifo(folder / "fifo.onnx-bundle")
    out["fifo.onnx-bundle"] = "not a regular file"
    (folder / "empty.onnx-bundle").write_bytes(b"")
    out["empty.onnx-bundle"] = "not an ra-sdk engine"
    (folder / "text.onnx-bundle").write_text("hello\n")
    out["text.onnx-bundle"] = "not an ra-sdk engine"
    (folder / "raw.plan").write_bytes(b"\x00" * 12 + b"ftrt" + bytes(200))
    out["raw.plan"] = "raw TensorRT plan"
    (folder / "plain.onnx").write_bytes(members["recon.onnx"])
    out["plain.onnx"] = "plain ONNX model"
    (folder / "truncated.onnx-bundle").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out["truncated.onnx-bundle"] = "not an ra-sdk engine"
    with zipfile.ZipFile(folder / "no-meta.onnx-bundle", "w") as zf:
        zf.writestr("recon.onnx", members["recon.onnx"])
    out["no-meta.onnx-bundle"] = "no meta.json"
    _zip(folder / "meta-not-json.onnx-bundle", None, members, meta_bytes=b"{not json")
    out["meta-not-json.onnx-bundle"] = "invalid meta.json"
    _zip(folder / "meta-list.onnx-bundle", None, members, meta_bytes=b"[1, 2, 3]")
    out["meta-list.onnx-bundle"] = "unknown engine format"
    _zip(folder / "meta-deep.onnx-bundle", None, members, meta_bytes=b"[" * 200_000 + b"]" * 200_000)
    out["meta-deep.onnx-bundle"] = "meta.json"
    variant("format.onnx-bundle", setp("format", value="ra-sdk-engine/99"), "unknown engine format")
    variant("kind.onnx-bundle", setp("kind", value="quantum"), "field kind")
    variant("tensorrt-kind.onnx-bundle", lambda m: (m.__setitem__("kind", "tensorrt"), m["build"].__setitem__("max_batch", 8)), "tensorrt")
    variant("channels-empty.onnx-bundle", setp("model", "channels", value=[]), "model.channels")
    variant("size-negative.onnx-bundle", setp("preset", "size", value=-5), "preset.size")
    variant("size-zero.onnx-bundle", setp("preset", "size", value=0), "preset.size")
    variant("size-string.onnx-bundle", setp("preset", "size", value="128"), "preset.size")
    variant("size-huge.onnx-bundle", setp("preset", "size", value=100_000), "preset.size")
    variant("image-size.onnx-bundle", setp("model", "image_size", value=100), "model.image_size")
    variant("clip-reversed.onnx-bundle", setp("preset", "clip", value=[99, 1]), "preset.clip")
    variant("preset-unknown-key.onnx-bundle", setp("preset", "bogus", value=1), "bogus")
    variant("sigma.onnx-bundle", setp("score", "sigma", value=1e9), "score.sigma")
    variant("perceptual.onnx-bundle", setp("score", "perceptual", value="magic"), "score.perceptual")
    variant("topk-zero.onnx-bundle", setp("score", "topk", value=0), "score.topk")
    variant("normals-empty.onnx-bundle", setp("calibration", "normal_scores", value=[]), "calibration.normal_scores")
    variant("normals-nan.onnx-bundle", lambda m: m["calibration"]["normal_scores"].__setitem__(3, float("nan")), "calibration.normal_scores[3]")
    variant("normals-unsorted.onnx-bundle", lambda m: m["calibration"]["normal_scores"].reverse(), "sorted")
    variant("threshold-nan.onnx-bundle", setp("calibration", "threshold", value=float("nan")), "calibration.threshold")
    variant("threshold-text.onnx-bundle", setp("calibration", "threshold", value="high"), "calibration.threshold")
    variant("no-recon.onnx-bundle", lambda m: m["networks"].pop("recon"), "recon")
    variant("no-features.onnx-bundle", lambda m: m["networks"].pop("features"), "features")
    variant("zip-slip.onnx-bundle", setp("networks", "recon", "file", value="../../etc/passwd"), "networks.recon.file")
    variant("checksum-bad.onnx-bundle", setp("checksums", "recon.onnx", value="0" * 64), "checksum of recon.onnx")
    variant("member-missing.onnx-bundle", lambda m: m["checksums"].__setitem__("ghost.onnx", "0" * 64), "ghost.onnx")
    # a member that is not ONNX, and an ONNX that loads external data, both with valid checksums
    for name, blob, expect in (("not-onnx.onnx-bundle", b"MZ" + bytes(500), "not an ONNX model"), ("external-data.onnx-bundle", external_data_onnx(), "external data")):
        m = json.loads(json.dumps(meta))
        mem = dict(members)
        mem["recon.onnx"] = blob
        m["checksums"]["recon.onnx"] = sha256(blob)
        _zip(folder / name, m, mem)
        out[name] = expect
    # zip directories that declare (or hide) bombs
    _zip(folder / "member-3gib.onnx-bundle", meta, members)
    _declare_size(folder / "member-3gib.onnx-bundle", "recon.onnx", 3 << 30)
    out["member-3gib.onnx-bundle"] = "declare"
    _zip(folder / "meta-2gib.onnx-bundle", meta, members)
    _declare_size(folder / "meta-2gib.onnx-bundle", "meta.json", 2 << 30)
    out["meta-2gib.onnx-bundle"] = "declare"
    lie = json.loads(json.dumps(meta))
    lie["source"] = {"padding": "0" * (40 << 20)}  # 40 MB of meta.json, deflated to a few KB
    _zip(folder / "meta-hidden-40mb.onnx-bundle", lie, members)
    _declare_size(folder / "meta-hidden-40mb.onnx-bundle", "meta.json", 1000)
    out["meta-hidden-40mb.onnx-bundle"] = "meta.json"
    return out


def external_data_onnx() -> bytes:
    """An ONNX model whose weight lives in a file beside it ("secret.bin"): loaded from
    bytes, ONNX Runtime would read that file from the current folder."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 128, 128])
    y = helper.make_tensor_value_info("x_ph", TensorProto.FLOAT, [None, 1, 128, 128])
    w = numpy_helper.from_array(np.ones((1,), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "secret.bin"
    model = helper.make_model(helper.make_graph([helper.make_node("Mul", ["x", "w"], ["x_ph"])], "g", [x], [y], [w]))
    assert isinstance(model, onnx.ModelProto)
    return model.SerializeToString()
