"""``ra-sdk listen``: the DICOM node, with pynetdicom as the sender in this process, dcmtk's
storescu as a sender written by others, a second pynetdicom SCP as the --forward
destination, SIGKILLs of the node mid-series and mid-screening, and the refusals.

CI installs ra-sdk[node] and Debian's dcmtk and sets RA_SDK_REQUIRE_NODE=1, so a missing
pynetdicom or storescu fails there instead of skipping."""

from __future__ import annotations

import collections
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REQUIRE = bool(os.environ.get("RA_SDK_REQUIRE_NODE"))
if not REQUIRE:
    pytest.importorskip("pynetdicom")
    pytest.importorskip("highdicom")

from pydicom import dcmread  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402

from ra_sdk.data.augment import normal_batch  # noqa: E402
from ra_sdk.io.write import write_dicom  # noqa: E402
from ra_sdk.journal import JOURNAL  # noqa: E402
from ra_sdk.node import Destination, Node, NodeConfig  # noqa: E402
from ra_sdk.screen import Screener  # noqa: E402

pytestmark = pytest.mark.slow
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"


def series(folder: Path, study: str, n: int, *, start: int = 0, patient: str = "P") -> list[Path]:
    imgs = normal_batch("test", n, start=start)
    return [write_dicom(folder / f"{study}-{z:03d}.dcm", (imgs[z] * 3000).astype(np.uint16), patient_id=patient, study_uid=study,
                        series_uid=f"{study}.1", instance=z + 1, position_z=float(z)) for z in range(n)]


def send(port: int, files: list[Path], *, calling: str = "TESTSCU", release: bool = True) -> list[int]:
    """C-STORE files in one association; their statuses."""
    ae = AE(ae_title=calling)
    for uid in {str(dcmread(f, stop_before_pixels=True).SOPClassUID) for f in files}:
        ae.add_requested_context(uid, [EXPLICIT, "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="RASDK")
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(dcmread(f)).Status) for f in files]
    if release:
        assoc.release()
    return statuses


def echo(port: int, *, calling: str = "TESTSCU") -> int:
    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="RASDK")
    assert assoc.is_established
    status = int(assoc.send_c_echo().Status)
    assoc.release()
    return status


class ForwardTarget:
    """A second pynetdicom SCP: the --forward destination; records what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str]] = []  # (study, SOP class, SOP instance)
        ae = AE(ae_title="PACS")
        for uid in ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4"):
            ae.add_supported_context(uid, [EXPLICIT, "1.2.840.10008.1.2"])
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)])
        self.port = self.server.server_address[1]

    def store(self, event):
        ds = event.dataset
        self.received.append((str(ds.StudyInstanceUID), str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


def rows_of(out: Path) -> list[dict]:
    p = out / "results.csv"
    return list(csv.DictReader(open(p, newline=""))) if p.exists() else []


def n_files(row: dict) -> int:
    return len(row["paths"].split(";")) if row["paths"] else 0


def wait_for(cond, timeout: float = 60.0, what: str = "") -> None:
    t = time.time()
    while not cond():
        if time.time() - t > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def pacs():
    d = ForwardTarget()
    yield d
    d.close()


@pytest.fixture(scope="module")
def screener():
    with Screener(backend="onnxruntime", device="cpu") as s:
        yield s


def test_a_series_and_a_single_image_arrive_and_are_screened_once_with_outputs_forwarded(tmp_path, screener, pacs):
    a = series(tmp_path / "src", "1.2.826.0.1.11", 20)
    b = series(tmp_path / "src", "1.2.826.0.1.12", 1, start=30)
    out = tmp_path / "out"
    cfg = NodeConfig(out=out, port=0, study_idle=0.3, forward=Destination("127.0.0.1", pacs.port, "PACS"))
    with Node(cfg, screener) as node:
        assert send(node.port, a[:10]) == [0] * 10
        assert send(node.port, a[10:] + b) == [0] * 11  # the series spread over two associations
        wait_for(lambda: len(pacs.received) == 4, what="4 forwarded objects")
        rows = {r["study"]: r for r in rows_of(out)}
        assert set(rows) == {"1.2.826.0.1.11", "1.2.826.0.1.12"}
        assert n_files(rows["1.2.826.0.1.11"]) == 20 and n_files(rows["1.2.826.0.1.12"]) == 1
        for study, src in (("1.2.826.0.1.11", a), ("1.2.826.0.1.12", b)):
            sc, seg = dcmread(out / "dicom" / study / "sc.dcm"), dcmread(out / "dicom" / study / "seg.dcm")
            assert sc.StudyInstanceUID == seg.StudyInstanceUID == study
            assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == f"{study}.1"
            refs = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
            assert refs <= {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in src}
            assert {(study, str(sc.SOPClassUID), str(sc.SOPInstanceUID)), (study, str(seg.SOPClassUID), str(seg.SOPInstanceUID))} <= set(pacs.received)
        # An instance for a study already screened re-opens it: screened again, row replaced.
        extra = write_dicom(tmp_path / "src" / "b-extra.dcm", (normal_batch("test", 1, start=31)[0] * 3000).astype(np.uint16), patient_id="P",
                            study_uid="1.2.826.0.1.12", series_uid="1.2.826.0.1.12.1", instance=2, position_z=1.0)
        assert send(node.port, [extra]) == [0]
        wait_for(lambda: any(r["study"] == "1.2.826.0.1.12" and n_files(r) == 2 for r in rows_of(out)), what="the re-screened study")
        assert sorted(r["study"] for r in rows_of(out)) == ["1.2.826.0.1.11", "1.2.826.0.1.12"]
        wait_for(lambda: len(pacs.received) == 6, what="the re-screened study's objects")


def dcmtk_storescu() -> str | None:
    """dcmtk's storescu (pynetdicom installs an app of the same name into the venv)."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        exe = Path(folder) / "storescu"
        if exe.is_file() and os.access(exe, os.X_OK):
            try:
                r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if "dcmtk" in (r.stdout + r.stderr).lower():
                return str(exe)
    return None


def test_dcmtk_storescu_pushes_the_demo_studies(tmp_path, screener):
    """Interoperability with a sender written by others: every demo DICOM study gets a row."""
    from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies

    exe = dcmtk_storescu()
    if exe is None:
        if REQUIRE:
            pytest.fail("dcmtk's storescu is not installed (apt-get install dcmtk)")
        pytest.skip("dcmtk's storescu is not installed")
    write_demo_studies(tmp_path / "demo", DemoSpec(n_normal=8, n_per_type=1, n_volumes=2))
    dicoms = [p for p in (tmp_path / "demo" / "studies").rglob("*.dcm")]
    expected = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in dicoms}
    assert len(expected) >= 5
    out = tmp_path / "out"
    with Node(NodeConfig(out=out, port=0, study_idle=0.3), screener) as node:
        r = subprocess.run([exe, "-aet", "DCMTK", "-aec", "RASDK", "+sd", "+r", "+sp", "*.dcm", "127.0.0.1", str(node.port), str(tmp_path / "demo" / "studies")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        wait_for(lambda: {row["study"] for row in rows_of(out)} == expected, what="a row per demo DICOM study")
    rows = rows_of(out)
    assert len(rows) == len(expected) and all(row["score"] for row in rows)


class NodeProcess:
    """``ra-sdk listen`` as a process, its log lines collected."""

    def __init__(self, out: Path, port: int, forward: str) -> None:
        cmd = [sys.executable, "-m", "ra_sdk.cli", "listen", "--port", str(port), "--out", str(out), "--study-idle", "2",
               "--forward", forward, "--backend", "onnxruntime", "--device", "cpu"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: any("listening on port" in ln for ln in self.lines) or self.proc.poll() is not None, 60, "the node to listen")
        assert self.proc.poll() is None, "\n".join(self.lines[-20:])

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def term(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigkill_mid_series_and_mid_screening_loses_nothing_and_repeats_nothing(tmp_path, pacs):
    """Kill -9 while a series is arriving, and again while a study is screened: after each
    restart every study has exactly one row and one journal line, and each output reached
    the destination once."""
    out, port = tmp_path / "out", free_port()
    forward = f"127.0.0.1:{pacs.port}:PACS"
    a = series(tmp_path / "src", "1.2.826.0.1.21", 20)
    b = series(tmp_path / "src", "1.2.826.0.1.22", 1, start=40)
    c = series(tmp_path / "src", "1.2.826.0.1.23", 120, start=0)

    node = NodeProcess(out, port, forward)
    send(port, a[:8], release=False)  # the series is still arriving...
    node.kill()  # ... when the node dies
    assert not rows_of(out)
    node = NodeProcess(out, port, forward)
    assert send(port, a) == [0] * 20  # the sender retries the whole series
    assert send(port, b) == [0]
    wait_for(lambda: len(rows_of(out)) == 2, what="rows of A and B")
    assert send(port, c) == [0] * 120
    wait_for(lambda: any("1.2.826.0.1.23: screening" in ln for ln in node.lines), what="C being screened")
    node.kill()  # mid-screening
    node = NodeProcess(out, port, forward)
    wait_for(lambda: len(rows_of(out)) == 3, what="C screened after the restart")
    wait_for(lambda: len(pacs.received) >= 6, what="6 forwarded objects")
    time.sleep(1.5)  # nothing more may come
    assert node.term() == 0, "\n".join(node.lines[-20:])
    rows = {r["study"]: r for r in rows_of(out)}
    assert {k: n_files(rows[k]) for k in rows} == {"1.2.826.0.1.21": 20, "1.2.826.0.1.22": 1, "1.2.826.0.1.23": 120}
    journaled = [json.loads(ln)["row"]["study"] for ln in (out / JOURNAL).read_text().splitlines() if '"row"' in ln]
    assert sorted(journaled) == sorted(rows), journaled  # each study screened to the end once
    counts = collections.Counter(sop for _, _, sop in pacs.received)
    assert len(counts) == 6 and set(counts.values()) == {1}, counts
    assert {study for study, _, _ in pacs.received} == set(rows)


def test_refusals_answer_with_the_right_status_and_the_node_keeps_answering(tmp_path, screener):
    import pynetdicom._config as pconfig

    out = tmp_path / "out"
    big = write_dicom(tmp_path / "big.dcm", np.full((1100, 1100), 1000, np.uint16), patient_id="P", study_uid="1.2.826.0.1.31", series_uid="1.2.826.0.1.31.1")
    good = series(tmp_path / "src", "1.2.826.0.1.32", 1)[0]
    no_uid = dcmread(good)
    del no_uid.StudyInstanceUID
    no_uid.save_as(tmp_path / "no-uid.dcm", enforce_file_format=True)
    # a file whose meta is fine and whose dataset is garbage, sent as raw bytes
    ds = dcmread(good)
    data = good.read_bytes()
    meta_end = 144 + int.from_bytes(data[140:144], "little")  # preamble, DICM, (0002,0000) UL group length
    corrupt = tmp_path / "corrupt.dcm"
    # a sequence of undefined length whose item ends in the middle of a tag: pydicom cannot parse it
    corrupt.write_bytes(data[:meta_end] + b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00\x01\x01\x01")
    with Node(NodeConfig(out=out, port=0, study_idle=0.3, allow=["GOODSCU"], max_instance_mb=1), screener) as node:
        # unknown calling AE title: rejected
        ae = AE(ae_title="STRANGER")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", node.port, ae_title="RASDK")
        assert assoc.is_rejected
        # a non-image SOP class (Basic Text SR): no presentation context for it
        ae = AE(ae_title="GOODSCU")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.88.11")
        assoc = ae.associate("127.0.0.1", node.port, ae_title="RASDK")
        assert not assoc.is_established or not assoc.accepted_contexts
        if assoc.is_established:
            assoc.release()
        # oversized (2.4 MB against a 1 MB limit), no Study Instance UID, a corrupt dataset
        assert send(node.port, [big], calling="GOODSCU") == [0xA700]
        assert send(node.port, [tmp_path / "no-uid.dcm"], calling="GOODSCU") == [0xA900]
        ae = AE(ae_title="GOODSCU")
        ae.add_requested_context(str(ds.SOPClassUID), [str(ds.file_meta.TransferSyntaxUID)])
        assoc = ae.associate("127.0.0.1", node.port, ae_title="RASDK")
        pconfig.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
        try:
            status = int(assoc.send_c_store(corrupt).Status)
        finally:
            pconfig.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
        assert status == 0xC210
        # still answering, and still storing
        assert echo(node.port, calling="GOODSCU") == 0
        assert send(node.port, [good], calling="GOODSCU") == [0]
        wait_for(lambda: [r["study"] for r in rows_of(out)] == ["1.2.826.0.1.32"], what="the good study's row")
    assert not (out / "spool" / "1.2.826.0.1.31").exists()
    shutil.rmtree(out)


def _certs(folder: Path) -> dict[str, Path]:
    """A CA, a server and a client certificate (openssl)."""
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl is not installed")
    folder.mkdir()
    run = lambda *a: subprocess.run([exe, *a], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ra-sdk test CA")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost")
        (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {k: folder / k for k in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_tls_with_client_certificates(tmp_path, screener):
    """--tls-cert/--tls-key/--tls-ca: a client with a certificate from the CA stores; one
    without a certificate never gets an association."""
    import ssl

    c = _certs(tmp_path / "certs")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(c["server.pem"], c["server.key"])
    server.load_verify_locations(c["ca.pem"])
    server.verify_mode = ssl.CERT_REQUIRED
    good = series(tmp_path / "src", "1.2.826.0.1.41", 1)
    with Node(NodeConfig(out=tmp_path / "out", port=0, study_idle=0.2, ssl_context=server), screener) as node:
        for with_cert in (True, False):
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(c["ca.pem"]))
            if with_cert:
                client.load_cert_chain(c["client.pem"], c["client.key"])
            ae = AE(ae_title="TLSSCU")
            ae.add_requested_context(MR, [EXPLICIT])
            assoc = ae.associate("127.0.0.1", node.port, ae_title="RASDK", tls_args=(client, "localhost"))
            if with_cert:
                assert assoc.is_established and int(assoc.send_c_store(dcmread(good[0])).Status) == 0
                assoc.release()
            else:
                assert not assoc.is_established
        wait_for(lambda: [r["study"] for r in rows_of(tmp_path / "out")] == ["1.2.826.0.1.41"], what="the TLS study's row")


def test_a_burst_of_studies_rewrites_the_worklist_a_few_times_not_once_per_study(tmp_path, screener):
    """The worklist (results.csv/.jsonl) is rewritten whole and sorted; per study that would
    cost O(rows) each time (about a second at 100,000 rows). Studies that queue share one
    rewrite; the last one of the burst is written at once; a restart rebuilds the worklist
    from the journal."""
    studies = [f"1.2.826.0.1.40.{i}" for i in range(12)]
    files = [f for i, uid in enumerate(studies) for f in series(tmp_path / "src", uid, 1, start=40 + i)]
    out = tmp_path / "out"
    with Node(NodeConfig(out=out, port=0, study_idle=0.3), screener) as node:
        assert send(node.port, files) == [0] * 12  # one association: all complete at once
        wait_for(lambda: len(rows_of(out)) == 12, what="12 rows while the node runs")
        assert 1 <= node.view_writes <= 3  # one per study before: 12
    assert sorted(r["study"] for r in rows_of(out)) == sorted(studies)
    assert len((out / ".ra-sdk-journal.jsonl").read_text().splitlines()) == 13  # header + 12
    (out / "results.csv").unlink()  # as if killed between a journal line and the rewrite
    with Node(NodeConfig(out=out, port=0, study_idle=0.3), screener) as node:
        assert sorted(r["study"] for r in rows_of(out)) == sorted(studies) and node.view_writes == 1
