"""Repair the two generator bugs of tensorrt-stubs 10.13 in a copy of the stubs, so mypy
can read them: a parameter named ``in`` (a keyword) and parameters without a default after
ones with a default. Only plugin and layer-builder signatures ra-sdk does not call are
touched. Usage: python scripts/fix_trt_stubs.py STUB_DIR (fails if a stub still does not parse)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$")


def split_params(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def fix_line(line: str) -> str:
    m = DEF.match(line)
    if not m:
        return line
    params = split_params(m.group(2))
    seen_default, fixed = False, []
    for p in params:
        p = re.sub(r"^(\s*)in:", r"\1in_:", p)
        if "=" in p:
            seen_default = True
        elif seen_default and ":" in p and not p.strip().startswith("*"):
            p = p + " = ..."
        fixed.append(p)
    return m.group(1) + ",".join(fixed) + m.group(3)


def main() -> None:
    for path in Path(sys.argv[1]).rglob("*.pyi"):
        lines = path.read_text().splitlines(keepends=True)
        text = "".join(fix_line(ln.rstrip("\n")) + ("\n" if ln.endswith("\n") else "") for ln in lines)
        ast.parse(text)  # raises SyntaxError if the stub is still broken
        path.write_text(text)


if __name__ == "__main__":
    main()
