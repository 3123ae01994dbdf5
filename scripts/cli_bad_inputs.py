"""Run the bad-input table of ``tests/test_cli_bad_inputs.py`` with each case in its own ``genlab``
subprocess, as a user would meet it, and count the outcomes.

    python scripts/cli_bad_inputs.py [--json PATH] [--jobs N] [--timeout SECONDS] [-k TEXT]

Trains the same tiny fixture models as the test (in-process, about 15 s), then runs every case as
``python -m genlab.cli ...`` in a fresh folder (its working directory), with a time limit per case.
Prints how many cases gave each outcome (clean errors, tracebacks, silently wrong, ...; see the
test module's docstring) and the ids and causes of the bad ones; ``--json`` also writes them, to
compare counts before and after a change. Exits 1 if any case went wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_table():
    """The test module (its CASES, fixtures builder and judge), imported from its file."""
    spec = importlib.util.spec_from_file_location("cli_bad_inputs_table", ROOT / "tests" / "test_cli_bad_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def traceback_cause(err: str) -> str | None:
    """``ExcType: message (at file:line in function)`` of the last traceback in ``err``, or None."""
    if "Traceback (most recent call last):" not in err:
        return None
    block = err.rsplit("Traceback (most recent call last):", 1)[1].splitlines()
    frames = [re.match(r'\s*File "(.+)", line (\d+), in (.+)', line) for line in block]
    frames = [f for f in frames if f]
    ours = [f for f in frames if f"{os.sep}genlab{os.sep}" in f.group(1)] or frames
    where = ""
    if ours:
        filename, line, function = ours[-1].groups()
        marker = f"{os.sep}genlab{os.sep}"
        short = "genlab/" + filename.rsplit(marker, 1)[1] if marker in filename else filename
        where = f" (at {short}:{line} in {function})"
    exception = next((line for line in block[1:] if line.strip() and not line.startswith((" ", "\t"))), "?")
    return f"{exception.strip()[:160]}{where}"


def run_case(table, case, index: int, fixtures: dict, work: Path, timeout: float) -> tuple[str, str, float]:
    """Run one case in a subprocess: ``(category, detail, seconds)``."""
    tmp = work / f"{index:03d}"
    tmp.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with table.case_folder(tmp, fixtures) as ph:
        if case.setup:
            case.setup(ph)
        command = [sys.executable, "-m", "genlab.cli", *case.argv(ph)]
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = process.communicate(timeout=timeout)
            result = table.Result(process.returncode, err, traceback_cause(err))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            result = table.Result(None, "", timed_out=True)
        seconds = time.monotonic() - start
        outcome = table.judge(case, result, ph)
    return outcome.category, outcome.detail.replace(str(work), "<tmp>"), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the counts and every case's outcome here")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    parser.add_argument("--timeout", type=float, default=90, help="seconds per case (default 90)")
    parser.add_argument("-k", dest="select", default="", help="run only cases whose id contains this text")
    args = parser.parse_args()

    table = load_table()
    cases = [case for case in table.CASES if args.select in case.id]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="genlab-bad-inputs-") as folder:
        work = Path(folder)
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                fixtures = table.build_fixtures(work / "fixtures")
        except BaseException:
            print(log.getvalue(), file=sys.stderr)
            raise
        built = time.monotonic()
        print(f"fixtures built in {built - started:.0f} s; running {len(cases)} cases", file=sys.stderr)
        (work / "cases").mkdir()
        outcomes = {}

        def one(item):
            index, case = item
            outcomes[case.id] = run_case(table, case, index, fixtures, work / "cases", args.timeout)
            if len(outcomes) % 25 == 0:
                print(f"  {len(outcomes)}/{len(cases)}", file=sys.stderr, flush=True)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, enumerate(cases)))
    finished = time.monotonic()

    counts = {category: 0 for category in table.CATEGORIES}
    for category, _, _ in outcomes.values():
        counts[category] += 1
    print(f"{len(cases)} cases in {finished - started:.0f} s (fixtures {built - started:.0f} s, "
          f"cases {finished - built:.0f} s, {args.jobs} at a time)")
    for category, description in table.CATEGORIES.items():
        print(f"{counts[category]:5d}  {category:15s} {description}")
    for category in table.BAD:
        bad = [(case.id, outcomes[case.id][1]) for case in cases if outcomes[case.id][0] == category]
        if bad:
            print(f"\n{category} ({len(bad)}):")
            for case_id, detail in bad:
                print(f"  {case_id}: {detail}")
    if args.json:
        args.json.write_text(json.dumps({
            "runtime_s": round(finished - started, 1), "fixtures_s": round(built - started, 1), "jobs": args.jobs,
            "counts": counts,
            "bad": {category: [case.id for case in cases if outcomes[case.id][0] == category]
                    for category in table.BAD},
            "cases": [{"id": case.id, "expect": case.expect, "category": outcomes[case.id][0],
                       "detail": outcomes[case.id][1], "seconds": round(outcomes[case.id][2], 2)} for case in cases],
        }, indent=2))
    return 1 if any(counts[category] for category in table.BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
