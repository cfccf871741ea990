"""Mutation testing of onebit's math: ``make mutation`` (or ``python tests/mutation/run.py``).

For every module of ``modules.toml`` (or only those named on the command line), mutmut 2 mutates
the file one small change at a time and runs that module's tests alone (``pytest -x``), so one
mutant costs a few seconds. String and f-string literal mutations are disabled: in these modules
they are error messages, whose wording the tests do not pin. Results accumulate in
``.mutmut-cache`` (killed mutants are not run again; survivors are re-run when the tests change).
Then the report ``tests/mutation/report.md`` is written from the cache: per module the mutants
killed, survived, timed out, and the survivors, each either matched by an entry of
``equivalent.toml`` (a mutant that changes no behaviour, with the reason) or listed as a gap.

    python tests/mutation/run.py                      # every module, then the report
    python tests/mutation/run.py src/onebit/optim.py  # one module, then the report
    python tests/mutation/run.py --survivors          # only the earlier survivors, then the report
    python tests/mutation/run.py --timeouts           # only the earlier timeouts, then the report
    python tests/mutation/run.py --report-only        # the report from the cache as it is

Score: killed / (all mutants - equivalent survivors); timeouts count as killed (the mutant made
the tests hang, which a test run notices).

mutmut writes each mutant into the source file itself while its tests run (the original is kept
as ``<file>.bak`` and put back after each mutant). Leave the checkout alone meanwhile (no edits,
no ``git stash``, no other test runs), or run it in a separate worktree:
``git worktree add ../onebit-mutation && cd ../onebit-mutation && make mutation``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REPORT = HERE / "report.md"
DISABLED = "string,fstring"


def load_modules() -> list[dict]:
    with open(HERE / "modules.toml", "rb") as f:
        return tomllib.load(f)["module"]


def load_equivalents() -> list[dict]:
    path = HERE / "equivalent.toml"
    if not path.exists():
        return []
    with open(path, "rb") as f:
        return tomllib.load(f).get("equivalent", [])


def runner_for(module: dict, sock: str) -> str:
    """The test command for one mutant: the module's tests, through the fork server on ``sock``."""
    tests = [t for t in module["tests"] if (ROOT / t).exists()]
    for t in module["tests"]:
        if t not in tests:
            print(f"warning: {t} (listed for {module['path']}) does not exist; skipped", file=sys.stderr)
    if not tests:
        raise SystemExit(f"no test file of {module['path']} exists; fix tests/mutation/modules.toml")
    return (f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'forkserver.py'))} run "
            f"{shlex.quote(sock)} -x -q -p no:cacheprovider --hypothesis-seed=0 {' '.join(tests)}")


def survivor_ids(path: str, status: str = "bad_survived") -> list[str]:
    """The cache's ids of the surviving mutants of ``path`` not listed as equivalent (or, with
    ``status="bad_timeout"``, of the mutants whose tests timed out)."""
    from mutmut.cache import Mutant, db_session, init_db

    from mutmut import RelativeMutationID

    equivalents = load_equivalents()
    source = (ROOT / path).read_text()

    @init_db
    @db_session
    def read() -> list[str]:
        ids = []
        for m in Mutant.select():
            if m.status != status or m.line.sourcefile.filename != path:
                continue
            mid = RelativeMutationID(line=m.line.line, index=m.index,
                                     line_number=m.line.line_number, filename=path)
            if status != "bad_survived" or not _match(equivalents, path,
                                                       *_diff_lines(source, path, mid)):
                ids.append(str(m.id))  # equivalent survivors would only survive again
        return ids

    return _in_root(read)


def _in_root(fn):
    """``fn()`` with the working directory at the repository root (mutmut's cache paths are
    relative to it)."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return fn()
    finally:
        os.chdir(cwd)


def run_module(module: dict, only: str | None = None) -> None:
    """Run mutmut on one module: every mutant not yet killed, or ``only`` the earlier
    survivors ("bad_survived") or timeouts ("bad_timeout")."""
    ids = survivor_ids(module["path"], only) if only else [None]
    if not ids:
        return
    sock_dir = tempfile.mkdtemp(prefix="onebit-mutation-")
    sock = os.path.join(sock_dir, "forkserver.sock")
    cmd = [sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", module["path"],
           "--runner", runner_for(module, sock), "--tests-dir", "tests",
           "--disable-mutation-types", DISABLED, "-m", "4", "-b", "30",
           "--simple-output", "--no-progress", "--CI"]
    print(f"== {module['path']}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ONEBIT_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    server = subprocess.Popen([sys.executable, str(HERE / "forkserver.py"), "serve", sock],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()  # "fork server ready": torch is imported
        rc = 0
        for mid in ids:
            rc |= subprocess.call(cmd + ([mid] if mid else []), cwd=ROOT, env=env)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(sock_dir, ignore_errors=True)
    if rc != 0:
        raise SystemExit(f"mutmut failed on {module['path']} (exit {rc})")


def _diff_lines(source: str, filename: str, mutation_id) -> tuple[str, str]:
    """The (removed, added) lines of one mutant, stripped: what equivalent.toml matches on."""
    from mutmut import Context, mutate

    ctx = Context(source=source, filename=filename, mutation_id=mutation_id)
    mutated, n = mutate(ctx)
    if not n:
        return "", ""
    removed, added = [], []
    for line in difflib.unified_diff(source.splitlines(), mutated.splitlines(), lineterm="", n=0):
        if line.startswith("---") or line.startswith("+++") or line.startswith("@@"):
            continue
        (removed if line.startswith("-") else added).append(line[1:].strip())
    return " / ".join(removed), " / ".join(added)


def collect() -> dict[str, dict]:
    """Per file: counts by status and the survivors ``(line_number, removed, added)``."""
    from mutmut import RelativeMutationID
    from mutmut.cache import Mutant, db_session, init_db

    @init_db
    @db_session
    def read() -> dict[str, dict]:
        out: dict[str, dict] = {}
        sources: dict[str, str] = {}
        for m in Mutant.select():
            fname = m.line.sourcefile.filename
            entry = out.setdefault(fname, {"status": {}, "survivors": []})
            entry["status"][m.status] = entry["status"].get(m.status, 0) + 1
            if m.status == "bad_survived":
                if fname not in sources:  # mutmut keeps the original as .bak while it runs
                    bak = ROOT / f"{fname}.bak"
                    sources[fname] = (bak if bak.exists() else ROOT / fname).read_text()
                mid = RelativeMutationID(line=m.line.line, index=m.index,
                                         line_number=m.line.line_number, filename=fname)
                removed, added = _diff_lines(sources[fname], fname, mid)
                entry["survivors"].append((m.line.line_number + 1, removed, added))
        return out

    return _in_root(read)


def _match(equivalents: list[dict], fname: str, removed: str, added: str) -> dict | None:
    for e in equivalents:
        if e["file"] == fname and e["before"].strip() == removed.strip() and \
                e["after"].strip() == added.strip():
            return e
    return None


def write_report(modules: list[dict]) -> float:
    data = collect()
    equivalents = load_equivalents()
    order = [m["path"] for m in modules]
    rows, details = [], []
    tot = {"n": 0, "killed": 0, "timeouts": 0, "eq": 0, "gap": 0, "untested": 0}
    for fname in order:
        if fname not in data:
            rows.append(f"| `{fname}` | not run | | | | | | |")
            continue
        st = data[fname]["status"]
        n = sum(st.values())
        killed = st.get("ok_killed", 0) + st.get("bad_timeout", 0) + st.get("ok_suspicious", 0)
        timeouts = st.get("bad_timeout", 0)
        untested = st.get("untested", 0) + st.get("skipped", 0)
        eq, gaps = [], []
        for line_no, removed, added in sorted(data[fname]["survivors"]):
            e = _match(equivalents, fname, removed, added)
            (eq if e else gaps).append((line_no, removed, added, e))
        scored = n - len(eq) - untested
        score = 100.0 * killed / scored if scored else 100.0
        rows.append(f"| `{fname}` | {n} | {killed} | {timeouts} | {len(eq)} | {len(gaps)} | "
                    f"{untested} | {score:.1f}% |")
        tot["n"] += n
        tot["killed"] += killed
        tot["timeouts"] += timeouts
        tot["eq"] += len(eq)
        tot["gap"] += len(gaps)
        tot["untested"] += untested
        if eq or gaps:
            details.append(f"\n### `{fname}`\n")
            for line_no, removed, added, e in gaps:
                details.append(f"- **survivor** line {line_no}: `{removed}` -> `{added}`")
            for line_no, removed, added, e in eq:
                details.append(f"- equivalent, line {line_no}: `{removed}` -> `{added}`: {e['reason']}")
    scored = tot["n"] - tot["eq"] - tot["untested"]
    score = 100.0 * tot["killed"] / scored if scored else 100.0
    lines = [
        "# Mutation testing report",
        "",
        "Written by `make mutation` (`tests/mutation/run.py`, mutmut 2.5.1, string and f-string "
        "literal mutations off; each module's tests from `tests/mutation/modules.toml`). "
        "Score = killed / (mutants run - equivalent survivors); a timeout counts as killed "
        "(`make mutation MUTATION_ARGS=--timeouts` re-runs them, e.g. after a run on a busy "
        "machine). "
        "Mutants \"not run\" belong to a run that was stopped (or to a module not reached yet); "
        "`make mutation` continues from `.mutmut-cache` where one is kept.",
        "",
        "| module | mutants | killed | of them timeouts | equivalent | surviving gaps | not run "
        "| score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| **all run** | {tot['n']} | {tot['killed']} | {tot['timeouts']} | {tot['eq']} | "
        f"{tot['gap']} | {tot['untested']} | **{score:.1f}%** |",
        "",
        "## Survivors",
        *(details or ["", "None."]),
        "",
    ]
    REPORT.write_text("\n".join(lines))
    print(f"report: {REPORT.relative_to(ROOT)}; score {score:.1f}% "
          f"({tot['killed']} killed of {scored}; {tot['gap']} surviving gaps)")
    return score


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", help="modules to mutate (default: all of modules.toml)")
    p.add_argument("--report-only", action="store_true", help="only write the report")
    p.add_argument("--survivors", action="store_true",
                   help="run only the mutants that survived before (after adding tests)")
    p.add_argument("--timeouts", action="store_true",
                   help="run only the mutants whose tests timed out before (e.g. on a busy "
                        "machine, where a slow test run counts as a timeout)")
    args = p.parse_args(argv)
    modules = load_modules()
    known = {m["path"]: m for m in modules}
    chosen = modules
    if args.paths:
        unknown = [x for x in args.paths if x not in known]
        if unknown:
            p.error(f"not in tests/mutation/modules.toml: {', '.join(unknown)}; "
                    f"known: {', '.join(known)}")
        chosen = [known[x] for x in args.paths]
    if not args.report_only:
        for module in chosen:
            run_module(module, "bad_survived" if args.survivors
                       else "bad_timeout" if args.timeouts else None)
    write_report(modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
