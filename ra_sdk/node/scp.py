"""The node's DICOM side (pynetdicom): what it accepts, and the C-STORE and C-ECHO handlers.

Presentation contexts: C-ECHO (Verification), and for storage the image SOP classes whose
pixels the readers decode (greyscale CT, MR, CR, DX, MG, XA/RF and Secondary Capture,
single- and multi-frame), each with the transfer syntaxes pydicom can decode here
(uncompressed always; JPEG, JPEG-LS, JPEG 2000, HTJ2K and RLE where their decoders are
installed). Anything else is refused at association time (no context).

C-STORE statuses (PS3.4 Annex B): 0x0000 stored (only after the spool file and its folder
are fsync'd); 0xA700 out of resources (the dataset is above --max-instance-mb, or the
spool cannot be written: the sender retries later); 0xA900 the dataset does not match its
SOP class (no valid Study/SOP Instance UID, or another SOP class than announced); 0xC210
cannot understand (the dataset does not parse).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ra_sdk.node")

#: C-STORE statuses
SUCCESS, OUT_OF_RESOURCES, DOES_NOT_MATCH, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xA900, 0xC210

#: storage SOP classes of greyscale images the readers decode
IMAGE_STORAGE = (
    "CTImageStorage", "EnhancedCTImageStorage", "LegacyConvertedEnhancedCTImageStorage",
    "MRImageStorage", "EnhancedMRImageStorage", "LegacyConvertedEnhancedMRImageStorage",
    "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation", "DigitalXRayImageStorageForProcessing",
    "DigitalMammographyXRayImageStorageForPresentation", "DigitalMammographyXRayImageStorageForProcessing",
    "XRayAngiographicImageStorage", "XRayRadiofluoroscopicImageStorage",
    "SecondaryCaptureImageStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage", "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
)


def transfer_syntaxes() -> list[str]:
    """Uncompressed syntaxes, and the compressed ones pydicom can decode here."""
    import pydicom.uid as u
    from pydicom.pixels import get_decoder

    out = [str(u.ImplicitVRLittleEndian), str(u.ExplicitVRLittleEndian), str(u.DeflatedExplicitVRLittleEndian), str(u.ExplicitVRBigEndian)]
    for ts in u.AllTransferSyntaxes:
        if not ts.is_compressed or str(ts) in out:
            continue
        try:
            if get_decoder(ts).is_available:
                out.append(str(ts))
        except NotImplementedError:
            continue
    return out


def make_ae(ae_title: str, *, allow: list[str] | None = None, max_pdu: int = 0) -> Any:
    """An application entity with the node's contexts; unknown calling AE titles are
    rejected at association time when ``allow`` is given."""
    from pynetdicom import AE
    from pynetdicom import sop_class as sc

    ae = AE(ae_title=ae_title)
    syntaxes = transfer_syntaxes()
    ae.add_supported_context("1.2.840.10008.1.1")  # Verification (C-ECHO)
    for name in IMAGE_STORAGE:
        ae.add_supported_context(getattr(sc, name), syntaxes)
    if allow:
        ae.require_calling_aet = list(allow)
    ae.maximum_pdu_size = max_pdu
    return ae


class Handlers:
    """C-ECHO, C-STORE and association bookkeeping, calling back into the node.

    ``store(study_uid, sop_uid, data, assoc_id)`` puts an instance in the spool (raises
    OSError when it cannot); ``released(assoc_id, aborted, peer)`` tells the node that an
    association ended (``peer``: calling AE title and address).
    """

    def __init__(self, store: Callable[[str, str, bytes, int], None], released: Callable[[int, bool, str], None], max_instance_bytes: int):
        self.store_cb, self.released_cb = store, released
        self.max_bytes = max_instance_bytes
        self.received: dict[int, int] = {}  # bytes received per association since its last C-STORE

    def bind(self) -> list[tuple[Any, Callable[..., Any]]]:
        from pynetdicom import evt

        return [(evt.EVT_C_ECHO, self.echo), (evt.EVT_C_STORE, self.store), (evt.EVT_DATA_RECV, self.data),
                (evt.EVT_RELEASED, self.release), (evt.EVT_ABORTED, self.abort), (evt.EVT_ESTABLISHED, self.established)]

    def echo(self, event: Any) -> int:
        return SUCCESS

    def established(self, event: Any) -> None:
        a = event.assoc
        log.debug("association %d from %s (%s:%s)", id(a), a.requestor.ae_title, a.requestor.address, a.requestor.port)

    def data(self, event: Any) -> None:
        """Raw PDUs as they arrive: an association whose pending dataset grows past twice
        the instance limit is aborted before the dataset is held in memory."""
        key = id(event.assoc)
        self.received[key] = self.received.get(key, 0) + len(event.data)
        if self.received[key] > 2 * self.max_bytes + (1 << 20):
            log.warning("association %d: a dataset above twice the %d MB instance limit: aborted", key, self.max_bytes >> 20)
            self.received[key] = 0
            event.assoc.abort()

    def store(self, event: Any) -> int:
        key = id(event.assoc)
        self.received[key] = 0
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as err:  # a malformed request
            log.warning("association %d: C-STORE refused, cannot read the dataset (%s)", key, err)
            return CANNOT_UNDERSTAND
        if len(data) > self.max_bytes:
            log.warning("association %d: C-STORE refused, %.1f MB is above the %d MB instance limit", key, len(data) / 2**20, self.max_bytes >> 20)
            return OUT_OF_RESOURCES
        try:
            ds = event.dataset
            study_uid = str(ds.get("StudyInstanceUID", ""))
            sop_uid = str(ds.get("SOPInstanceUID", ""))
            sop_class = str(ds.get("SOPClassUID", ""))
        except Exception as err:
            log.warning("association %d: C-STORE refused, the dataset does not parse (%s: %s)", key, type(err).__name__, " ".join(str(err).split())[:200])
            return CANNOT_UNDERSTAND
        from .spool import valid_uid

        if not (valid_uid(study_uid) and valid_uid(sop_uid)):
            log.warning("association %d: C-STORE refused, invalid Study/SOP Instance UID (%r, %r)", key, study_uid[:80], sop_uid[:80])
            return DOES_NOT_MATCH
        announced = str(event.request.AffectedSOPClassUID)
        if sop_class and sop_class != announced:
            log.warning("association %d: C-STORE refused, dataset SOP class %s differs from the announced %s", key, sop_class, announced)
            return DOES_NOT_MATCH
        try:
            self.store_cb(study_uid, sop_uid, data, key)
        except OSError as err:
            log.error("association %d: cannot spool %s (%s); the sender will retry", key, sop_uid, err.strerror or err)
            return OUT_OF_RESOURCES
        return SUCCESS

    def release(self, event: Any) -> None:
        self._ended(event, aborted=False)

    def abort(self, event: Any) -> None:
        self._ended(event, aborted=True)

    def _ended(self, event: Any, *, aborted: bool) -> None:
        a = event.assoc
        self.received.pop(id(a), None)
        self.released_cb(id(a), aborted, f"{a.requestor.ae_title} ({a.requestor.address}:{a.requestor.port})")
