"""Engine files: one self-describing zip per target (DESIGN.md section 5).

    model.onnx-bundle   portable: meta.json + recon.onnx [+ features.onnx] [+ *_fp16.onnx]
    model.plan          TensorRT: meta.json + recon.plan [+ features.plan], built for one GPU

meta.json carries the model config, preprocessing preset, scoring config, calibration,
precision, build GPU and TensorRT version, versions and a sha256 of every member. Reading
checks all of it; a truncated or tampered file fails with one clear line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .configs import ModelConfig
from .errors import EngineError
from .preprocess import Preset
from .scoring import ScoreConfig

FORMAT = "ra-sdk-engine/1"


@dataclass
class Calibration:
    """Scores of held-out normal images, and the operating points derived from them."""

    normal_scores: list[float]  # sorted ascending
    threshold: float  # image-level: flag s > threshold (the ``percentile`` of normals)
    percentile: float = 95.0
    pixel_threshold: float = float("nan")  # at most 5% of normal pixels exceed it
    source: str = ""

    @classmethod
    def from_scores(cls, scores: np.ndarray, normal_maps_threshold: float, *, percentile: float = 95.0, source: str = "") -> Calibration:
        s = np.sort(np.asarray(scores, np.float64))
        if s.size < 10:
            raise EngineError(f"calibration needs at least 10 normal images, got {s.size}")
        return cls(s.tolist(), float(np.percentile(s, percentile)), percentile, float(normal_maps_threshold), source)

    def percentile_of(self, score: float) -> float:
        """Percent of calibration normals scoring at or below ``score``."""
        s = self.normal_scores
        return 100.0 * float(np.searchsorted(s, score, side="right")) / len(s)

    def quantiles(self) -> dict[str, float]:
        s = np.asarray(self.normal_scores)
        return {f"p{q}": float(np.percentile(s, q)) for q in (1, 5, 25, 50, 75, 95, 99)}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "quantiles": self.quantiles(), "n": len(self.normal_scores)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(d["normal_scores"], d["threshold"], d.get("percentile", 95.0), d.get("pixel_threshold", float("nan")), d.get("source", ""))


@dataclass
class Network:
    """One serialized network inside an engine file."""

    file: str
    inputs: dict[str, list[int]]
    outputs: list[str]
    precision: str = "fp32"


NETWORKS = ("recon", "features")


def output_names(network: str, n_scales: int) -> list[str]:
    """Outputs of an exported network: ``x_ph`` (recon only), then ``emb0..`` per scale."""
    embs = [f"emb{i}" for i in range(n_scales)]
    return ["x_ph", *embs] if network == "recon" else embs


def network_spec(model: ModelConfig, network: str, *, file: str = "", precision: str = "fp32") -> Network:
    """The I/O of ``network`` ("recon" or "features") of a model: input ``x`` (B, C, S, S)."""
    shape = [-1, model.in_channels, model.image_size, model.image_size]
    return Network(file, {"x": shape}, output_names(network, len(model.channels)), precision)


@dataclass
class EngineMeta:
    kind: str  # "onnx" or "tensorrt"
    model: ModelConfig
    preset: Preset
    score: ScoreConfig
    networks: dict[str, Network]
    calibration: Calibration | None = None
    build: dict[str, Any] = field(default_factory=dict)  # gpu, compute capability, tensorrt version
    versions: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "model": self.model.to_dict(),
            "preset": self.preset.to_dict(),
            "score": self.score.to_dict(),
            "networks": {k: dataclasses.asdict(v) for k, v in self.networks.items()},
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "build": self.build,
            "versions": self.versions,
            "source": self.source,
            "checksums": self.checksums,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineMeta:
        if d.get("format") != FORMAT:
            raise EngineError(f"unknown engine format {d.get('format')!r}; this ra-sdk reads {FORMAT!r}")
        return cls(
            kind=d["kind"],
            model=ModelConfig.from_dict(d["model"]),
            preset=Preset.from_dict(d["preset"]),
            score=ScoreConfig.from_dict(d["score"]),
            networks={k: Network(**v) for k, v in d["networks"].items()},
            calibration=Calibration.from_dict(d["calibration"]) if d.get("calibration") else None,
            build=d.get("build", {}),
            versions=d.get("versions", {}),
            source=d.get("source", {}),
            checksums=d.get("checksums", {}),
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_engine(path: str | Path, meta: EngineMeta, members: dict[str, bytes]) -> Path:
    """Write an engine file atomically (temporary file in the same folder, then rename)."""
    from .io.files import atomic_write

    path = Path(path)
    meta.checksums = {name: sha256(data) for name, data in members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        # fixed member dates: the same content gives the same bytes (reproducible engines)
        for name, data in {"meta.json": json.dumps(meta.to_dict(), indent=2).encode(), **members}.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return atomic_write(path, buf.getvalue())


@dataclass
class Engine:
    """An engine file in memory: its metadata and its members (serialized networks)."""

    path: Path
    meta: EngineMeta
    members: dict[str, bytes]

    def network(self, name: str) -> tuple[Network, bytes]:
        if name not in self.meta.networks:
            raise EngineError(f"{self.path}: no network {name!r}; it has {', '.join(self.meta.networks)}")
        net = self.meta.networks[name]
        return net, self.members[net.file]


#: limits checked from the zip directory before any member is read
MAX_ENGINE_BYTES = 2 << 30
MAX_META_BYTES = 8 << 20
MAX_MEMBER_BYTES = 1 << 30


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, path: Path) -> bytes:
    """A member's bytes, never more than ``cap`` (the directory's size can lie)."""
    if info.file_size > cap:
        raise EngineError(f"{path}: member {info.filename} declares {info.file_size:,} bytes, above the limit of {cap:,}")
    with zf.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise EngineError(f"{path}: member {info.filename} inflates beyond {cap:,} bytes")
    return data


def read_engine(path: str | Path) -> Engine:
    """Read and verify an engine file; raises EngineError with one line on any problem.

    Everything is checked before it is used: the path is a regular file of bounded size,
    member sizes come from the zip directory before anything is inflated, meta.json is
    checked against the schema (:func:`ra_sdk.engine_schema.check_meta`), and every member
    against its sha256.
    """
    from .engine_schema import check_members, check_meta, what_is

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise EngineError(f"{path}: no such engine file") from None
    except OSError as err:
        raise EngineError(f"{path}: cannot open engine file ({err.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise EngineError(f"{path}: is a folder; --engine takes an engine file (e.g. model.onnx-bundle)")
    if not stat.S_ISREG(st.st_mode):
        raise EngineError(f"{path}: not a regular file (a FIFO or device); --engine takes an engine file")
    if st.st_size > MAX_ENGINE_BYTES:
        raise EngineError(f"{path}: {st.st_size / 2**30:.1f} GiB is larger than any engine ra-sdk reads ({MAX_ENGINE_BYTES / 2**30:.0f} GiB)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
        if not zipfile.is_zipfile(path):
            raise EngineError(f"{path}: {what_is(head)}")
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if "meta.json" not in infos:
                raise EngineError(f"{path}: not an ra-sdk engine (no meta.json inside)")
            total = sum(i.file_size for i in infos.values())
            if total > MAX_ENGINE_BYTES:
                raise EngineError(f"{path}: members declare {total:,} bytes in all, above the limit of {MAX_ENGINE_BYTES:,}")
            meta_raw = json.loads(_read_member(zf, infos["meta.json"], MAX_META_BYTES, path))
            if not isinstance(meta_raw, dict) or meta_raw.get("format") != FORMAT:
                got = meta_raw.get("format") if isinstance(meta_raw, dict) else type(meta_raw).__name__
                raise EngineError(f"{path}: unknown engine format {got!r}; this ra-sdk reads {FORMAT!r}")
            check_meta(meta_raw, str(path))
            meta = EngineMeta.from_dict(meta_raw)
            members = {}
            for name, digest in meta.checksums.items():
                if name not in infos:
                    raise EngineError(f"{path}: member {name} listed in meta.json is missing (truncated or tampered file)")
                data = _read_member(zf, infos[name], MAX_MEMBER_BYTES, path)
                if sha256(data) != digest:
                    raise EngineError(f"{path}: checksum of {name} does not match meta.json (tampered or corrupted file)")
                members[name] = data
    except EngineError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as err:
        raise EngineError(f"{path}: not a readable engine file (truncated or damaged zip: {err})") from None
    except OSError as err:
        raise EngineError(f"{path}: cannot read engine file ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError, ValueError) as err:
        raise EngineError(f"{path}: invalid meta.json ({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    check_members(path, meta.kind, {name: members[net.file] for name, net in meta.networks.items()})
    return Engine(path, meta, members)


def update_meta(path: str | Path, **changes: Any) -> Engine:
    """Rewrite an engine file with changed metadata (e.g. calibration), members unchanged."""
    eng = read_engine(path)
    for k, v in changes.items():
        setattr(eng.meta, k, v)
    write_engine(path, eng.meta, eng.members)
    return read_engine(path)


def describe(engine: Engine) -> dict[str, Any]:
    """What ``ra-sdk inspect`` prints: metadata without the long lists."""
    d = engine.meta.to_dict()
    if d["calibration"]:
        d["calibration"] = {k: v for k, v in d["calibration"].items() if k != "normal_scores"}
    d["file"] = str(engine.path)
    d["size_bytes"] = engine.path.stat().st_size
    return d
