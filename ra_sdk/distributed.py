"""Screening on a Ray cluster: ``ra-sdk screen --ray`` and :func:`screen`.

Ray Data does the distributing; ra-sdk builds no scheduler, queue or worker protocol:

    driver      discovery (one row per study), the journal, results, progress  (ra_sdk.run)
    Ray tasks   decoding and preprocessing (:func:`ra_sdk.screen.prepare`), where the data is
    Ray actors  scoring: an actor pool (``ActorPoolStrategy``), each actor holding one
                :class:`~ra_sdk.screen.Screener` (the engine loaded once, on its GPU when
                ``num_gpus`` > 0: Ray sets ``CUDA_VISIBLE_DEVICES`` per actor)

:class:`RayScreener` has the :class:`~ra_sdk.screen.Screener` surface that :func:`ra_sdk.run.run`
uses, so a distributed run writes the same files as a local one (results.csv/.jsonl,
summary.json, run.json, the journal, maps, previews, DICOM outputs and the report) and
resumes the same way: a study in OUT's journal with the same engine and settings is not
screened again, whichever way it was screened. Settings include the backend, device and
precision as an actor resolves them (a probe task with an actor's resources asks).

Fault tolerance is Ray's: Ray Data creates pool actors with ``max_restarts=-1`` (a dead
actor is restarted) and ``max_task_retries=-1`` (its unfinished batch is run again); decode
tasks run with Ray's default ``max_retries`` (3). A batch's results reach the driver only when the whole
batch is done, and the driver writes each study once (a repeat is dropped).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .engine import Engine, read_engine
from .errors import ConfigError, MissingDependencyError, RaSdkError
from .results import StudyResult

log = logging.getLogger(__name__)

#: the Ray release the extra pins and the tests run
RAY_REQUIREMENT = "ray[data]==2.60.0"


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise MissingDependencyError("ray[data]", "ray", "screening on a Ray cluster") from err
    return ray


def connect(address: str = "auto", *, num_cpus: int | None = None) -> dict[str, Any]:
    """Join a Ray cluster (or start one on this machine); returns its resources.

    ``address``: "auto" joins the cluster named by ``RAY_ADDRESS`` or started on this
    machine with ``ray start``, else starts a local one; "local" always starts a local one;
    anything else is a cluster address (``HOST:6379`` or ``ray://HOST:10001``).
    ``num_cpus``: the CPUs of a local cluster this call starts (default: all).

    A local cluster keeps Ray's token authentication on, but with a token held in this
    process's environment (``RAY_AUTH_TOKEN``, inherited by Ray's processes) rather than
    the ``~/.ray/auth_token`` file Ray would write: ra-sdk writes nothing in the home folder.
    Ray's own session files stay in its temporary folder (``/tmp/ray``; ``RAY_TMPDIR``).
    """
    ray = import_ray()
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    kw: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    if address in ("auto", "local"):
        _local_token()  # before any ray.init: Ray caches what it finds on the first
    try:
        if address == "auto" and num_cpus is None:
            try:
                ray.init(address="auto", **kw)
                return dict(ray.cluster_resources())
            except ConnectionError:
                address = "local"  # no cluster to join: start one
        if address in ("auto", "local"):
            ray.init(address="local", num_cpus=num_cpus, **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RaSdkError(f"Ray: cannot connect to {address!r}: {' '.join(str(err).split())[:300]}") from None
    return dict(ray.cluster_resources())


def _local_token() -> None:
    """A token for a local cluster, in the environment, unless the user configured one."""
    import secrets

    if any(os.environ.get(v) for v in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        return
    if (Path.home() / ".ray" / "auth_token").is_file():
        return  # the user's own token (Ray reads it; nothing is written)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Ray reads both into its C++ config when imported; refresh it the way ray.init does
    # when it turns token mode on itself (ray 2.60, the pinned release).
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # compiled, no stub

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _probe(engine: Engine, backend: str, device: str, precision: str, batch_size: int) -> dict[str, Any]:
    """Runs with an actor's resources: what a scoring actor resolves "auto" to."""
    from .screen import Screener

    with Screener(engine, backend=backend, device=device, precision=precision, batch_size=batch_size) as s:
        return {"backend": s.backend, "device": s.device, "precision": s.precision, "batch_size": s.batch_size, "ra_sdk": __version__}


def _decode(batch: dict[str, np.ndarray], preset: Any, max_bytes: int) -> dict[str, np.ndarray]:
    """A Ray task: decode and preprocess a batch of studies."""
    from .screen import prepare

    prepared = [prepare(item, preset, int(i), max_bytes=max_bytes) for i, item in zip(batch["i"], batch["item"])]
    out = np.empty(len(prepared), dtype=object)
    out[:] = prepared
    return {"i": np.asarray(batch["i"], dtype=np.int64), "prepared": out}


class _ScoreActor:
    """A Ray actor: one Screener (engine loaded once), scoring batches of decoded studies."""

    def __init__(self, engine: Any, options: dict[str, Any], return_maps: bool, counter: Any = None):
        import ray

        from .screen import Screener

        if isinstance(engine, ray.ObjectRef):
            engine = ray.get(engine)
        self.screener = Screener(engine, **options)
        self.return_maps = return_maps
        self.counter = counter
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(self.screener.score_prepared(zip((int(i) for i in batch["i"]), batch["prepared"]), return_maps=self.return_maps))
        if self.counter is not None:  # an audit of every study the engine scored, and where
            self.counter.add.remote([r.study for _, r in pairs if r.error is None], {"pid": os.getpid(), "node": self.node})
        results = np.empty(len(pairs), dtype=object)
        results[:] = [r for _, r in pairs]
        return {"i": np.array([i for i, _ in pairs], dtype=np.int64), "result": results}


class RayScreener:
    """A :class:`~ra_sdk.screen.Screener` whose decoding runs in Ray tasks and scoring in a
    Ray actor pool; hand it to :func:`ra_sdk.run.run` like a local one.

    Args:
        engine: engine file (read and verified here, then shipped to the actors through
            Ray's object store: the workers need not see the file).
        actors: scoring actors in the pool.
        gpus_per_actor / cpus_per_actor: Ray resources of each actor (fractions allowed).
        studies_per_task: studies per decode task and per actor call (default 32: on 2 CPUs
            8 gave 40 images/s, 32 gave 61, 64 and 128 57-59, with 2 actors).
        counter: optional Ray actor handle with an ``add(study_ids, worker)`` method, told
            every study an actor scored and where (``worker``: its pid and Ray node id), for
            audits and tests.
    Other arguments as :class:`~ra_sdk.screen.Screener`.
    """

    def __init__(self, engine: str | Path | Engine | None = None, *, backend: str = "auto", device: str = "auto", precision: str = "auto",
                 batch_size: int = 32, threshold: float | None = None, memory_budget_mb: int | None = None,
                 actors: int = 1, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0, studies_per_task: int = 32, counter: Any = None):
        from .data import DEMO_ENGINE
        from .io.limits import DEFAULT_BUDGET_BYTES

        if actors < 1:
            raise ConfigError(f"--actors must be at least 1, got {actors}")
        if gpus_per_actor < 0 or cpus_per_actor < 0 or (gpus_per_actor == 0 and cpus_per_actor == 0):
            raise ConfigError(f"each actor needs some CPU or GPU: got --cpus-per-actor {cpus_per_actor}, --gpus-per-actor {gpus_per_actor}")
        if studies_per_task < 1:
            raise ConfigError(f"studies per task must be at least 1, got {studies_per_task}")
        if threshold is not None and not np.isfinite(threshold):
            raise ConfigError(f"threshold must be a finite number, got {threshold}")
        self.ray = import_ray()
        if not self.ray.is_initialized():
            connect("auto")
        self.engine = engine if isinstance(engine, Engine) else read_engine(engine or DEMO_ENGINE)
        self.preset = self.engine.meta.preset
        cal = self.engine.meta.calibration
        self.threshold = threshold if threshold is not None else (cal.threshold if cal else None)
        self.memory_budget = DEFAULT_BUDGET_BYTES if memory_budget_mb is None else int(memory_budget_mb) << 20
        self.actors, self.gpus, self.cpus, self.per_task, self.counter = actors, gpus_per_actor, cpus_per_actor, studies_per_task, counter
        self._check_resources()
        self._engine_ref = self.ray.put(self.engine)
        probe = self.ray.remote(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor)(_probe)
        try:
            got = self.ray.get(probe.remote(self._engine_ref, backend, device, precision, batch_size))
        except self.ray.exceptions.RayTaskError as err:
            cause = err.as_instanceof_cause() if hasattr(err, "as_instanceof_cause") else err
            raise RaSdkError(f"Ray: a scoring actor cannot start: {' '.join(str(cause).split())[-300:]}") from None
        if got["ra_sdk"] != __version__:
            raise RaSdkError(f"Ray: the workers run ra-sdk {got['ra_sdk']}, this driver {__version__}; install the same version on every node")
        self.backend, self.device, self.precision, self.batch_size = got["backend"], got["device"], got["precision"], got["batch_size"]
        # Each actor asks for what the probe resolved, so every actor scores alike; on a CPU
        # it computes with as many threads as the CPUs Ray gave it (rounded up).
        threads = 0 if self.device != "cpu" else max(1, math.ceil(cpus_per_actor))
        self._options = {"backend": self.backend, "device": self.device, "precision": self.precision, "batch_size": batch_size, "threshold": self.threshold, "threads": threads}

    @property
    def calibrated(self) -> bool:
        return self.engine.meta.calibration is not None

    def _check_resources(self) -> None:
        total = self.ray.cluster_resources()
        for name, each in (("CPU", self.cpus), ("GPU", self.gpus)):
            have = float(total.get(name, 0.0))
            if each > 0 and each > have:
                raise ConfigError(f"Ray: one actor asks for {each:g} {name} but the cluster has {have:g}; lower --{name.lower()}s-per-actor")
        if self.cpus > 0 and self.actors * self.cpus >= float(total.get("CPU", 0.0)) and self.gpus == 0:
            log.warning("Ray: %d actors x %g CPU take every CPU of the cluster (%g); decode tasks will wait for them (use fractional --cpus-per-actor)",
                        self.actors, self.cpus, total.get("CPU", 0.0))

    def stream(self, items: Sequence[Any], *, return_maps: bool = False, workers: int = 2) -> Iterator[tuple[int, StudyResult]]:
        """(index, result) per item as batches finish on the cluster, in no set order.
        ``workers``: decode tasks at once, cluster-wide; as in local screening, each study may
        decode to at most the memory budget / ``workers`` (checked from headers first)."""
        from .io.limits import study_budget

        if not len(items):
            return
        ray = self.ray
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver's own display shows progress
        ctx.print_on_execution_start = False
        # Studies, decoded stacks and results travel as Python objects (Ray serialises them);
        # saying so up front spares a warning per column.
        ctx.enable_fallback_to_arrow_object_ext_type = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
        rows = [{"i": i, "item": item} for i, item in enumerate(items)]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), -(-len(rows) // self.per_task))))
        ds = ds.map_batches(_decode, batch_size=self.per_task, fn_kwargs={"preset": self.preset, "max_bytes": study_budget(self.memory_budget, workers)},
                            num_cpus=1, compute=ray.data.TaskPoolStrategy(size=max(1, workers)))
        ds = ds.map_batches(
            _ScoreActor,
            batch_size=self.per_task,
            fn_constructor_kwargs={"engine": self._engine_ref, "options": self._options, "return_maps": return_maps, "counter": self.counter},
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            # Fault tolerance: Ray Data's actor pool creates its actors with max_restarts=-1
            # and max_task_retries=-1 unless told otherwise (a dead actor is restarted and its
            # unfinished batch run again); tests/test_distributed.py kills one to check.
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i, r in zip(batch["i"], batch["result"]):
                yield int(i), r

    def close(self) -> None:
        self._engine_ref = None

    def __enter__(self) -> RayScreener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def screen(studies_root: str | Path, out: str | Path, engine: str | Path | Engine | None = None, *, address: str = "auto", num_cpus: int | None = None,
           actors: int = 1, gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0, resume: bool = True, **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Screen every study under ``studies_root`` into ``out`` on a Ray cluster: the same
    files and rows as :func:`ra_sdk.run.run`. Keyword arguments go to :class:`RayScreener`
    (backend, device, precision, threshold, ...) or to ``run`` (save, previews, dicom,
    on_start, on_result). Returns (summary, rows sorted by score)."""
    from .run import run

    run_keys = {"save", "previews", "dicom", "return_maps", "on_start", "on_result"}
    run_kw = {k: v for k, v in kw.items() if k in run_keys}
    scr_kw = {k: v for k, v in kw.items() if k not in run_keys}
    connect(address, num_cpus=num_cpus)
    with RayScreener(engine, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor, **scr_kw) as screener:
        return run(studies_root, out, screener, resume=resume, **run_kw)
