"""Print the nvcc -D options of the scoring spec's CLAHE constants (ra_sdk/spec.py), as
ra_sdk.kernels passes them to NVRTC; read from the source without importing ra_sdk."""

import ast
import pathlib

NAMES = {"CLAHE_GRAY_LEVELS": "RA_CLAHE_GREY", "CLAHE_NBINS": "RA_CLAHE_BINS"}
tree = ast.parse((pathlib.Path(__file__).resolve().parents[1] / "ra_sdk" / "spec.py").read_text())
values = {
    n.targets[0].id: ast.literal_eval(n.value)
    for n in tree.body
    if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and n.targets[0].id in NAMES
}
print(" ".join(f"-D{NAMES[k]}={values[k]}" for k in NAMES))
