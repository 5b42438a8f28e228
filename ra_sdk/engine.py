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
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .configs import ModelConfig
from .errors import RaSdkError
from .presets import Preset
from .scoring import ScoreConfig

FORMAT = "ra-sdk-engine/1"


class EngineError(RaSdkError):
    """An engine file is missing, truncated, tampered with, or built for other hardware."""


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
    path = Path(path)
    meta.checksums = {name: sha256(data) for name, data in members.items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        # fixed member dates: the same content gives the same bytes (reproducible engines)
        for name, data in {"meta.json": json.dumps(meta.to_dict(), indent=2).encode(), **members}.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    os.replace(tmp, path)
    return path


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


def read_engine(path: str | Path) -> Engine:
    """Read and verify an engine file; raises EngineError with one line on any problem."""
    path = Path(path)
    if not path.exists():
        raise EngineError(f"{path}: no such engine file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "meta.json" not in names:
                raise EngineError(f"{path}: not an ra-sdk engine (no meta.json inside)")
            meta_raw = json.loads(zf.read("meta.json"))
            meta = EngineMeta.from_dict(meta_raw)
            members = {}
            for name, digest in meta.checksums.items():
                if name not in names:
                    raise EngineError(f"{path}: member {name} listed in meta.json is missing (truncated or tampered file)")
                data = zf.read(name)
                if sha256(data) != digest:
                    raise EngineError(f"{path}: checksum of {name} does not match meta.json (tampered or corrupted file)")
                members[name] = data
    except EngineError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise EngineError(f"{path}: not a readable engine file (truncated or not a zip: {err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise EngineError(f"{path}: invalid meta.json ({type(err).__name__}: {err})") from None
    for name, net in meta.networks.items():
        if net.file not in members:
            raise EngineError(f"{path}: network {name} has no checksummed file {net.file}")
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


def format_description(d: dict[str, Any]) -> str:
    lines = [f"engine   {d['file']} ({d['size_bytes'] / 1e6:.1f} MB, {d['kind']})"]
    m = d["model"]
    lines.append(f"model    {m['name']} channels {tuple(m['channels'])} zdim {m['zdim']} input {m['image_size']}x{m['image_size']}")
    p = d["preset"]
    lines.append(f"preset   {p['name']} ({p['modality']}): {p['normalisation']} clip {tuple(p['clip'])}, size {p['size']}, pad to square {p['pad_to_square']}")
    s = d["score"]
    lines.append(f"score    perceptual {s['perceptual']}, CLAHE {s['use_clahe']}, sigma {s['sigma']}, image score {s['aggregation']}" + (f" {s['topk']:.0%}" if s["aggregation"] == "topk" else "") + f", study {s['study_aggregation']}")
    for name, n in d["networks"].items():
        lines.append(f"network  {name}: {n['file']} [{n['precision']}] inputs {n['inputs']} outputs {', '.join(n['outputs'])}")
    c = d["calibration"]
    if c:
        q = ", ".join(f"{k} {v:.4g}" for k, v in c["quantiles"].items())
        lines.append(f"calib    {c['n']} normals ({c['source']}); flag above p{c['percentile']:g} = {c['threshold']:.5g}; pixel threshold {c['pixel_threshold']:.5g}")
        lines.append(f"         quantiles: {q}")
    else:
        lines.append("calib    none (run ra-sdk calibrate ENGINE --normals DIR)")
    if d["build"]:
        lines.append("build    " + ", ".join(f"{k} {v}" for k, v in d["build"].items()))
    lines.append("versions " + ", ".join(f"{k} {v}" for k, v in d["versions"].items()))
    return "\n".join(lines)
