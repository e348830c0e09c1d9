"""Run ``orchestrator validate`` on corpus cases, each in its own process, and measure it.

Used by ``tests/test_corpus.py`` (not a test itself). Reads a JSON list of
``[case, folder, manifest, db]`` on stdin and writes one JSON line per case: its exit status
(negative: killed by that signal), its peak RSS in KiB, its wall time and what it printed.

The interpreter imports the orchestrator once, then forks a child per case, so a case costs
its own work and not a fresh interpreter's start. ``os.wait4`` gives each child's own peak
RSS (it starts from the parent's resident pages, which a fresh process would need too).
A child that hangs is killed by an alarm, and one whose memory runs away hits an address
space limit, so a regression fails the test instead of freezing or swamping the machine.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback

#: A case that takes longer has hung (a FIFO opened for reading, a runaway loop).
CASE_SECONDS = 20
#: Over three times the 300 MB the test allows (a Python process reserves more address
#: space than it touches), and far below what would hurt a shared machine.
ADDRESS_SPACE = 1024**3


def run_case(folder: str, manifest: str, db: str, log: str) -> tuple[int, int]:
    """(exit status, peak RSS in KiB) of ``orchestrator validate`` in a child process."""
    from orchestrator.cli import main

    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.chdir(folder)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            signal.alarm(CASE_SECONDS)
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
            code = main(["validate", manifest, "--db", db])
        except BaseException:  # what the test looks for: a traceback is a failure
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _pid, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


def main() -> None:
    cases = json.load(sys.stdin)
    # Imported before forking, so no case pays for it: the command line imports what a
    # command needs only when it runs (``--help`` stays quick), so name it here.
    import orchestrator.cli
    import orchestrator.livecatalog
    import orchestrator.logs
    import orchestrator.manifest
    import orchestrator.outputs.preflight
    import orchestrator.planning
    import orchestrator.store
    import orchestrator.views  # noqa: F401

    for case, folder, manifest, db in cases:
        log = os.path.join(folder, ".validate.log")
        started = time.monotonic()
        code, rss = run_case(folder, manifest, db, log)
        seconds = round(time.monotonic() - started, 3)
        with open(log, encoding="utf-8", errors="replace") as fh:
            output = fh.read()
        result = {"case": case, "exit": code, "rss_kib": rss, "seconds": seconds}
        sys.stdout.write(json.dumps({**result, "output": output}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
