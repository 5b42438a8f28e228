"""Reading a screening output folder into what people look at: the HTML worklist
(``html``), the pictures of a study (``previews``, ``overlay``) and the DICOM objects that go
back to PACS (``dicom``). Nothing here screens; it reads results and arrays it is given."""

from .html import REPORT, build_report

__all__ = ["REPORT", "build_report"]
