"""The commands the tool suggests ("next: ..."): each one works when pasted, with the
``--db`` (and the ``--out``) it needs.

The summaries of :mod:`orchestrator.views` print some hints without the store; the
command line completes them on the way out (:func:`completed_hints`).
"""

from __future__ import annotations

import io
import re
import shlex
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from orchestrator.cli.options import hosts_of
from orchestrator.defaults import DEFAULT_API_BASE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.engine.pool import EngineReport

_HINT = re.compile(r"^(next: orchestrator [^(#\n]*?)(\s+\((.*)\))?$", re.MULTILINE)


def completed_hints(text: str, db: str) -> str:
    """``text`` with every ``next: orchestrator ...`` hint given ``--db`` (when it has
    none), and its explanation turned into a shell comment, so the line can be pasted.

    >>> print(completed_hints("next: orchestrator reconcile   (unknown outcome)", "my.db"))
    next: orchestrator reconcile --db my.db   # unknown outcome
    >>> print(completed_hints("next: orchestrator retry --batch b --failed", "s.db"))
    next: orchestrator retry --batch b --failed --db s.db
    """

    def complete(found: re.Match[str]) -> str:
        command = found.group(1).rstrip()
        if " --db " not in f"{command} ":
            command += f" --db {shlex.quote(db)}"
        why = found.group(3)
        return f"{command}   # {why}" if why else command

    return _HINT.sub(complete, text)


@contextmanager
def hinted(out: TextIO, db: str) -> Iterator[TextIO]:
    """A buffer for a view's output, written to ``out`` with its hints completed."""
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        out.write(completed_hints(buffer.getvalue(), db))


def rerun_command(
    report: EngineReport,
    *,
    db: str,
    manifest: str | None = None,
    batch: str | None = None,
    out: str | None = None,
    prices: str | None = None,
    simulate: bool = False,
    api_base: str = DEFAULT_API_BASE,
    trust_host: str | None = None,
) -> str:
    """The command that fetches what this run paid for and could not fetch (a re-run),
    with the options it needs, the trust a host-not-allowed breaker asks for included:
    ``run MANIFEST`` after a run, ``work`` after a ``work``."""
    parts = ["orchestrator"]
    if manifest is not None:
        parts += ["run", shlex.quote(manifest)]
    else:
        parts += ["work"] + (["--batch", shlex.quote(batch)] if batch else [])
    parts += ["--db", shlex.quote(str(db))]
    if manifest is not None and out:
        parts += ["--out", shlex.quote(out)]
    if manifest is not None and prices:
        parts += ["--prices", shlex.quote(prices)]
    if simulate:
        parts.append("--simulate")
    elif api_base != DEFAULT_API_BASE:
        parts += ["--api-base", shlex.quote(api_base)]
    hosts = hosts_of(trust_host)
    # A host-not-allowed breaker stays open (a setting must change): the run keeps it.
    wanted = report.breaker.host if report.breaker is not None else None
    if wanted is not None and wanted not in hosts:
        hosts.append(wanted)
    if hosts:
        parts += ["--trust-host", shlex.quote(",".join(hosts))]
    return " ".join(parts)


def work_command(batch: str, db: str) -> str:
    """``orchestrator work --batch B --db DB``, quoted for a shell."""
    return f"orchestrator work --batch {shlex.quote(batch)} --db {shlex.quote(db)}"
