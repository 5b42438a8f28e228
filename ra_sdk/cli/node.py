"""``ra-sdk listen``: the DICOM node (C-ECHO and C-STORE SCP that screens what arrives)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from ._common import check_writable, engine_notice, finite


@click.command("listen")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one, printed at start).")
@click.option("--ae-title", default="RASDK", show_default=True, help="This node's AE title (1 to 16 characters).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the spool, the journal, results and DICOM outputs.")
@click.option("--engine", type=click.Path(path_type=Path), default=None, help="Engine file (default: the bundled demo engine).")
@click.option("--backend", default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True)
@click.option("--threshold", type=float, default=None, callback=finite, help="Flag scores above this (default: the engine's calibrated operating point).")
@click.option("--allow", "allow", multiple=True, metavar="CALLING_AET", help="Accept associations only from these calling AE titles (repeat the option).")
@click.option("--forward", default=None, metavar="HOST:PORT:AET", help="Send each study's SC and SEG here (C-STORE), retried from an outbox that survives restarts.")
@click.option("--study-idle", default=5.0, show_default=True, type=click.FloatRange(0, 86400), help="A study is complete this many seconds after its last instance, once its associations are released.")
@click.option("--max-instance-mb", default=1024, show_default=True, type=click.IntRange(1, 1 << 20), help="Refuse a C-STORE dataset above this size (status 0xA700); twice it aborts the association.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="TLS: this node's certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="TLS: its private key (PEM).")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="TLS: require client certificates signed by this CA (PEM).")
def listen_cmd(port: int, ae_title: str, out: Path, engine: Path | None, backend: str, device: str, precision: str, threshold: float | None,
               allow: tuple[str, ...], forward: str | None, study_idle: float, max_instance_mb: int, tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None) -> None:
    """Receive studies over DICOM, screen each when complete, write its row and SC + SEG
    into OUT (and send them on with --forward). Stops cleanly on SIGTERM or Ctrl-C."""
    from .._optional import require
    from ..errors import ConfigError
    from ..node import Destination, Node, NodeConfig
    from ..screen import Screener

    require("pynetdicom", "the DICOM node")
    require("highdicom", "the DICOM node's SC and SEG outputs")
    ssl_context = None
    if tls_cert or tls_key or tls_ca:
        if not (tls_cert and tls_key):
            raise ConfigError("TLS needs both --tls-cert and --tls-key (and --tls-ca to require client certificates)")
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(str(tls_cert), str(tls_key))
        if tls_ca:
            ssl_context.load_verify_locations(str(tls_ca))
            ssl_context.verify_mode = ssl.CERT_REQUIRED
    check_writable(out)
    cfg = NodeConfig(out=out, port=port, ae_title=ae_title, allow=list(allow), forward=Destination.parse(forward) if forward else None,
                     study_idle=study_idle, max_instance_mb=max_instance_mb, ssl_context=ssl_context)
    logging.getLogger("ra_sdk.node").setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("ra_sdk.node").addHandler(handler)
    logging.getLogger("ra_sdk.node").propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    screener = Screener(engine, backend=backend, device=device, precision=precision, threshold=threshold)
    engine_notice(screener)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node = Node(cfg, screener).start()
    click.echo(f"ra-sdk node {ae_title} listening on port {node.port}", err=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        node.stop()
