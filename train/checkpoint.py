"""Checkpoints: safetensors tensors + a JSON of the resolved configuration. No pickle.

``<dir>/model.safetensors``   network weights (and BN buffers)
``<dir>/state.safetensors``   optimiser moments and RNG state (for resuming)
``<dir>/config.json``         model, preprocessing preset, training config, progress

An exported engine file (``.onnx-bundle``) is a checkpoint too: its ``recon`` network
keeps every weight under its state-dict name (see ``ra_sdk.export.onnx_export.to_onnx``),
so :func:`load_weights` and :func:`load_model` rebuild the PyTorch network from it. The
bundled demo model is therefore stored once, as its engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ra_sdk.configs import ModelConfig
from ra_sdk.errors import CheckpointError

if TYPE_CHECKING:
    from ra_sdk.network import RANet


def _flatten_optimizer(prefix: str, sd: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    # a captured (CUDA graph) step keeps its learning rate in a device tensor: stored as its
    # value; Trainer.resume puts it back into the live tensor the graph reads
    groups = [{k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in g.items()} for g in sd["param_groups"]]
    meta: dict[str, Any] = {"param_groups": groups, "state": {}}
    for idx, st in sd["state"].items():
        keys = []
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{idx}.{k}"] = v.detach().cpu().contiguous()
                keys.append(k)
        meta["state"][str(idx)] = keys
    return meta


def _unflatten_optimizer(prefix: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {int(idx): {k: tensors[f"{prefix}.{idx}.{k}"] for k in keys} for idx, keys in meta["state"].items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def save(
    path: str | Path,
    model: torch.nn.Module,
    *,
    model_config: ModelConfig,
    preset: dict[str, Any],
    train_config: dict[str, Any],
    progress: dict[str, Any],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    rng: torch.Tensor | None = None,
) -> Path:
    """Write a checkpoint folder atomically (into a temporary folder, then renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    opt_meta = {}
    if optimizers:
        tensors: dict[str, torch.Tensor] = {}
        for name, opt in optimizers.items():
            opt_meta[name] = _flatten_optimizer(name, opt.state_dict(), tensors)
        if rng is not None:
            tensors["rng"] = rng.cpu()
        save_file(tensors, str(tmp / "state.safetensors"))
    config = {
        "format": "ra-sdk-checkpoint/1",
        "model": model_config.to_dict(),
        "preset": preset,
        "train": train_config,
        "progress": progress,
        "optimizers": opt_meta,
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if path.exists():
        old = path.with_name(path.name + ".old")
        if old.exists():
            _rmtree(old)
        path.rename(old)
        tmp.rename(path)
        _rmtree(old)
    else:
        tmp.rename(path)
    return path


def _rmtree(p: Path) -> None:
    for f in p.iterdir():
        f.unlink()
    p.rmdir()


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not a checkpoint folder (no config.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}/config.json: not valid JSON ({err})") from None
    if config.get("format") != "ra-sdk-checkpoint/1":
        raise CheckpointError(f"{path}: unknown checkpoint format {config.get('format')!r}; expected 'ra-sdk-checkpoint/1'")
    return config


def weights_from_engine(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config) recovered from an engine file (see
    :func:`ra_sdk.network.load_engine_network`)."""
    from ra_sdk.engine import read_engine
    from ra_sdk.errors import EngineError
    from ra_sdk.network import load_engine_network

    try:
        eng = read_engine(path)
        weights = load_engine_network(eng).state_dict()
    except EngineError as err:
        raise CheckpointError(str(err)) from None
    source = eng.meta.source or {}
    config = {
        "format": "ra-sdk-checkpoint/1",
        "model": eng.meta.model.to_dict(),
        "preset": eng.meta.preset.to_dict(),
        "train": {"objective": source.get("objective")},
        "progress": source.get("progress", {}),
        "optimizers": {},
        "engine_source": source,  # provenance of the weights (original checkpoint name, sha256)
    }
    return dict(weights), config


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config) of a checkpoint folder or an engine file, through safetensors
    and ONNX only (never unpickles)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_file():
        return weights_from_engine(path)
    config = read_config(path)
    try:
        return load_file(str(path / "model.safetensors")), config
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}/model.safetensors: cannot load weights safely ({err})") from None


def load_model(path: str | Path, *, device: str = "cpu") -> tuple[RANet, dict[str, Any]]:
    """Rebuild the network of a checkpoint folder or engine file and load its weights (eval mode)."""
    from ra_sdk.network import build

    weights, config = load_weights(path)
    net = build(ModelConfig.from_dict(config["model"]))
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model config ({str(err).splitlines()[0]})") from None
    return net.to(device).eval(), config


def load_state(path: str | Path) -> tuple[dict[str, dict[str, Any]], torch.Tensor | None]:
    """Optimiser state dicts and RNG state for resuming."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = read_config(path)
    try:
        tensors = load_file(str(path / "state.safetensors"))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}/state.safetensors: cannot load safely ({err})") from None
    opts = {name: _unflatten_optimizer(name, meta, tensors) for name, meta in config["optimizers"].items()}
    return opts, tensors.get("rng")
