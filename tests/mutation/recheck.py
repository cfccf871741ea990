"""Re-run the gaps of ``report.md`` against the current tests, without mutmut or its cache.

    python tests/mutation/recheck.py                          # every survivor listed as a gap
    python tests/mutation/recheck.py src/onebit/nn/adder.py   # those of one module

Each single-line survivor (``**survivor** line N: `before` -> `after```) is written into a
temporary copy of ``src/`` (line N replaced, its indentation kept; the checkout is not touched),
and that module's tests from ``modules.toml`` run against the copy (``pytest -x``; first once
unmutated, where they must pass). Prints
``killed`` or ``SURVIVED`` per mutant and exits 1 if any survived, so that new tests written for
the gaps can be checked in minutes; ``make mutation`` then re-measures everything and rewrites the
report. Survivors spanning several lines (shown joined by `` / ``) are skipped and counted.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from run import REPORT, ROOT, load_modules

GAP = re.compile(r"^- \*\*survivor\*\* line (\d+): `(.*)` -> `(.*)`$")
SECTION = re.compile(r"^### `(.+)`$")

# Runs pytest with the copy of src/ first on the path (the editable install's redirecting finder
# removed, so that `import onebit` finds the copy; the compiled kernels come from the copy too).
BOOT = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'Redirect' not in type(f).__name__]; "
        "sys.path.insert(0, sys.argv.pop(1)); import onebit; "
        "import pytest; sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider'] + sys.argv[1:]))")


def gaps(report: Path) -> list[tuple[str, int, str, str]]:
    out, current = [], None
    for line in report.read_text().splitlines():
        if m := SECTION.match(line):
            current = m.group(1)
        elif (m := GAP.match(line)) and current:
            out.append((current, int(m.group(1)), m.group(2), m.group(3)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="only these modules (paths as in modules.toml)")
    a = p.parse_args(argv)
    tests = {m["path"]: m["tests"] for m in load_modules()}
    todo = [g for g in gaps(REPORT) if not a.files or g[0] in a.files]
    from onebit import _kernels  # the built extension, wherever the install keeps it

    ext = Path(_kernels.__file__).resolve()
    survived = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src)
        shutil.copy2(ext, src / "onebit" / ext.name)
        def run_tests(fname: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-c", BOOT, str(src), *tests[fname]],
                                  cwd=ROOT, capture_output=True, text=True)

        # every module's tests must pass on the unmutated copy, or no mutant result means anything
        for fname in dict.fromkeys(g[0] for g in todo):
            done = run_tests(fname)
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-3000:] + done.stderr[-2000:])
                raise SystemExit(f"the tests of {fname} fail without any mutation")
        for fname, line_no, before, after in todo:
            if " / " in before or " / " in after:
                skipped += 1
                continue
            path = src / Path(fname).relative_to("src")
            original = path.read_text()
            lines = original.split("\n")
            target = lines[line_no - 1]
            if target.strip() != before:
                print(f"stale   {fname}:{line_no}: the line is now {target.strip()!r}")
                continue
            indent = target[: len(target) - len(target.lstrip())]
            lines[line_no - 1] = indent + after
            path.write_text("\n".join(lines))
            try:
                done = run_tests(fname)
            finally:
                path.write_text(original)
            if done.returncode not in (0, 1, 2):  # 1: a test failed; 2: collection broke
                sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
                raise SystemExit(f"pytest could not run the tests of {fname} (exit "
                                 f"{done.returncode})")
            killed = done.returncode != 0
            survived += not killed
            print(f"{'killed ' if killed else 'SURVIVED'} {fname}:{line_no}: `{before}` -> `{after}`",
                  flush=True)
    print(f"{len(todo) - skipped} rechecked, {survived} survived, {skipped} multi-line skipped")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
