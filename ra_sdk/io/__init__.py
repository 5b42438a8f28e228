"""Reading users' files: DICOM, NIfTI, PNG/JPEG/TIFF, and study discovery."""

from .dicom import decode as read_dicom
from .discovery import classify, discover, read_folder_images, read_path, read_study, study_for_path
from .nifti import read_nifti
from .raster import read_raster
from .study import Slices, Study

__all__ = [
    "Slices",
    "Study",
    "classify",
    "discover",
    "read_dicom",
    "read_folder_images",
    "read_nifti",
    "read_path",
    "read_raster",
    "read_study",
    "study_for_path",
]
