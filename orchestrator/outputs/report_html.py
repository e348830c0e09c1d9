"""The HTML of the review report: plain view objects in, one self-contained page out.

:mod:`orchestrator.outputs.report` gathers the facts; this module only lays them out. Every
string that came from a user, a manifest or the API goes through :func:`esc`; paths are
already relative URLs. The page loads nothing from the network: its style sheet and its few
lines of script are inline, and a Content-Security-Policy limits it to files beside it
(the script is allowed by its hash, so an injected ``<script>`` could never run).

>>> esc("<script>alert('x')</script> & co")
'&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co'
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


def esc(text: object) -> str:
    """Escape text for HTML content and quoted attribute values."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True, slots=True)
class Clip:
    """One job as a card: a playable video when it succeeded, else a placeholder."""

    job_id: str
    model: str
    state: str
    prompt: str | None
    params: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]
    facts: tuple[str, ...]
    video_src: str | None = None
    poster_src: str | None = None
    sidecar_src: str | None = None
    width: int | None = None
    height: int | None = None
    note: str | None = None
    anchor: str | None = None
    """The failures-table anchor of a failed job (``f-3``)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a comparison sheet: a base job (plus the other axes' labels)."""

    title: str
    tags: tuple[str, ...]
    prompt: str | None
    inputs: tuple[str, ...]
    cells: tuple[Clip | None, ...]


@dataclass(frozen=True, slots=True)
class Sheet:
    """Jobs that share matrix axes: rows are base jobs, columns one axis's values."""

    axis: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class ModelLine:
    """One line of the per-model table."""

    model_id: str
    name: str
    succeeded: int
    failed: int
    other: int
    spend: float
    turnaround: str


@dataclass(frozen=True, slots=True)
class CostLine:
    """One model's estimate against what RunComfy billed, as the page shows it."""

    model_id: str
    name: str
    billed: int
    jobs: int
    estimate: float | None
    """The estimates of the billed jobs; None when none of them has one."""
    actual: float | None
    """What was billed; None when nothing is billed yet."""
    difference: str
    """``+25.0%``, or why there is none (``no estimate``)."""
    over: bool
    """Billed more than estimated."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed or needs_reconcile job and why."""

    anchor: str
    job_id: str
    model: str
    state: str
    attempts: str
    reason: str
    prompt: str | None


@dataclass(frozen=True, slots=True)
class Page:
    """Everything the report shows."""

    batch: str
    manifest: str
    generated: str
    total: int
    counts: tuple[tuple[str, int], ...]
    spend: float
    wall: str
    wall_span: str
    models: tuple[ModelLine, ...]
    sheets: tuple[Sheet, ...]
    loose: tuple[Clip, ...]
    failures: tuple[Failure, ...]
    videos: int
    costs: tuple[CostLine, ...] = ()
    """Empty when no job has an estimate or a cost (the section is left out)."""


STYLE = """
:root{--bg:#f5f6f8;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e3e6eb;--ok:#0f8a4b;
--bad:#c4321c;--warn:#b25e00;--accent:#3b5bdb;--shade:rgba(16,24,40,.06)}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--card:#1d2128;--ink:#e7e9ee;
--muted:#98a2b3;--line:#2c323c;--ok:#4cc38a;--bad:#ff7a66;--warn:#f5b352;--accent:#8da2fb;
--shade:rgba(0,0,0,.3)}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.45;
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1600px;margin:0 auto;padding:28px 32px 56px}
header h1{margin:0;font-size:26px;letter-spacing:-.01em}
header p{margin:4px 0 0;color:var(--muted);font-size:13px}
h2{font-size:17px;margin:36px 0 12px;display:flex;align-items:baseline;gap:10px}
h2 small{font-weight:400;color:var(--muted);font-size:13px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;
margin-top:20px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;
box-shadow:0 1px 2px var(--shade)}
.tile b{display:block;font-size:24px;font-weight:650;letter-spacing:-.01em}
.tile span{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.tile small{display:block;color:var(--muted);font-size:12px;margin-top:2px}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin-top:14px}
.chip{border-radius:999px;padding:2px 10px;font-size:12px;background:var(--line);
color:var(--ink);white-space:nowrap}
.s-succeeded{background:rgba(15,138,75,.14);color:var(--ok)}
.s-failed{background:rgba(196,50,28,.13);color:var(--bad)}
.s-needs_reconcile,.s-retry_wait{background:rgba(178,94,0,.14);color:var(--warn)}
table.t{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);
border-radius:12px;overflow:hidden;font-size:13px}
.t th,.t td{text-align:left;padding:8px 12px;border-bottom:1px solid var(--line);
vertical-align:top}
.t th.n{text-align:right}
.t th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.04em}
.t tr:last-child td{border-bottom:0}
.t td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;padding-bottom:6px}
.sheet{display:grid;gap:10px;min-width:min-content}
.row{display:grid;gap:12px;grid-template-columns:minmax(170px,230px) repeat(var(--n),
minmax(190px,1fr));align-items:start}
.colhead{font-weight:600;font-size:13px;padding:0 2px;color:var(--muted)}
.rowhead{padding:10px 4px 0 0}
.rowhead h3{margin:0;font-size:15px;word-break:break-word}
.prompt{margin:6px 0 0;font-size:13px;color:var(--ink);word-break:break-word}
.meta{color:var(--muted);font-size:12px;margin-top:4px;word-break:break-word}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden;
box-shadow:0 1px 2px var(--shade)}
.card video{display:block;width:100%;height:auto;background:#000}
.card .body{padding:8px 10px 10px}
.card .id{font-size:11px;color:var(--muted);overflow-wrap:anywhere}
.card .facts{font-size:12px;margin-top:3px;font-variant-numeric:tabular-nums}
.card .links{font-size:12px;margin-top:4px}
.card .links a{color:var(--accent);text-decoration:none;margin-right:10px}
.empty{border-style:dashed;box-shadow:none;display:flex;flex-direction:column;gap:6px;
align-items:flex-start;justify-content:center;min-height:120px;padding:12px}
.empty a{color:var(--muted);font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px}
.grid .card h3{font-size:14px;margin:0;word-break:break-word}
button.play{margin-top:8px;border:1px solid var(--line);background:var(--card);color:var(--ink);
border-radius:8px;padding:3px 10px;font:inherit;font-size:12px;cursor:pointer}
button.play:hover{border-color:var(--accent);color:var(--accent)}
.reason{color:var(--bad)}
.over{color:var(--warn)}
.ok{color:var(--ok)}
.note{margin-top:12px;color:var(--warn);font-size:13px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
"""

#: "Play row": start every video of a comparison row together, all but the first muted
#: (and stop them again).
SCRIPT = (
    "document.addEventListener('click',function(e){"
    "var b=e.target.closest('button.play');if(!b)return;"
    "var vs=b.closest('.row').querySelectorAll('video'),go=false;"
    "vs.forEach(function(v){if(v.paused)go=true;});"
    "vs.forEach(function(v,i){if(go){v.muted=i>0;v.currentTime=0;v.play().catch(function(){});}"
    "else{v.pause();}});});"
)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; img-src 'self'; media-src 'self'"
    )


def _chips(counts: Iterable[tuple[str, int]]) -> str:
    return "".join(
        f'<span class="chip s-{esc(state)}">{esc(state.replace("_", " "))} {number}</span>'
        for state, number in counts
    )


def _params(clip: Clip) -> str:
    parts = [f"{esc(name)} {esc(value)}" for name, value in clip.params]
    return f'<div class="meta">{" · ".join(parts)}</div>' if parts else ""


def _card(clip: Clip, *, shared_prompt: str | None, titled: bool) -> str:
    """A video card, or a dashed placeholder for a job without a playable video."""
    head = f'<h3 class="mono">{esc(clip.job_id)}</h3>' if titled else ""
    prompt = ""
    if clip.prompt is not None and clip.prompt != shared_prompt:
        prompt = f'<p class="prompt">{esc(clip.prompt)}</p>'
    if clip.video_src is None:
        where = f' <a href="#{esc(clip.anchor)}">why?</a>' if clip.anchor else ""
        return (
            f'<div class="card empty" title="{esc(clip.job_id)}">{head}'
            f'<span class="chip s-{esc(clip.state)}">{esc(clip.note or clip.state)}</span>'
            f'<span class="id mono">{esc(clip.job_id)}{where}</span>{prompt}</div>'
        )
    size = ""
    if clip.width and clip.height:
        size = f' width="{clip.width}" height="{clip.height}"'
    poster = f' poster="{esc(clip.poster_src)}"' if clip.poster_src else ""
    links = f'<a href="{esc(clip.video_src)}">mp4</a>'
    if clip.sidecar_src:
        links += f'<a href="{esc(clip.sidecar_src)}">sidecar</a>'
    model = "" if not titled else f'<div class="meta">{esc(clip.model)}</div>'
    inputs = ""
    if titled and clip.inputs:
        inputs = f'<div class="meta">from {esc(", ".join(clip.inputs))}</div>'
    return (
        f'<div class="card" title="{esc(clip.job_id)}">'
        f'<video controls preload="none"{poster}{size} src="{esc(clip.video_src)}"></video>'
        f'<div class="body">{head}{model}{prompt}'
        f'<div class="facts">{esc(" · ".join(clip.facts))}</div>{_params(clip)}{inputs}'
        f'<div class="id mono">{"" if titled else esc(clip.job_id)}</div>'
        f'<div class="links">{links}</div></div></div>'
    )


def _sheet(sheet: Sheet) -> str:
    n = len(sheet.columns)
    head = "".join(f'<div class="colhead">{esc(c)}</div>' for c in sheet.columns)
    rows = []
    for row in sheet.rows:
        tags = f'<div class="meta">{esc(" · ".join(row.tags))}</div>' if row.tags else ""
        prompt = f'<p class="prompt">{esc(row.prompt)}</p>' if row.prompt else ""
        inputs = f'<div class="meta">from {esc(", ".join(row.inputs))}</div>' if row.inputs else ""
        playable = sum(1 for c in row.cells if c is not None and c.video_src)
        button = '<button class="play" type="button">▶ play row</button>' if playable > 1 else ""
        cells = "".join(
            _card(c, shared_prompt=row.prompt, titled=False)
            if c is not None
            else '<div class="card empty"><span class="meta">not in this batch</span></div>'
            for c in row.cells
        )
        rows.append(
            f'<div class="row" style="--n:{n}"><div class="rowhead">'
            f'<h3 class="mono">{esc(row.title)}</h3>{tags}{prompt}{inputs}{button}</div>'
            f"{cells}</div>"
        )
    return (
        f"<h2>By {esc(sheet.axis)} <small>{len(sheet.rows)} row(s) × {n} column(s)</small></h2>"
        f'<div class="scroll"><div class="sheet"><div class="row" style="--n:{n}">'
        f'<div class="colhead">job</div>{head}</div>{"".join(rows)}</div></div>'
    )


def _summary(page: Page) -> str:
    failed = sum(n for s, n in page.counts if s in ("failed", "needs_reconcile"))
    tiles = [
        ("Videos", str(page.videos), f"of {page.total} job(s)"),
        ("Failed", str(failed), "failed or needs reconcile"),
        ("Spend", f"${page.spend:,.2f}", "actual cost recorded"),
        ("Wall time", page.wall, page.wall_span),
        ("Models", str(len(page.models)), ""),
    ]
    body = "".join(
        f'<div class="tile"><span>{esc(label)}</span><b>{esc(value)}</b>'
        f"<small>{esc(hint)}</small></div>"
        for label, value, hint in tiles
    )
    waiting = sum(
        n
        for s, n in page.counts
        if s not in ("succeeded", "failed", "needs_reconcile", "cancelled")
    )
    note = (
        f'<p class="note">{waiting} job(s) still queued or running: this page is a snapshot.</p>'
        if waiting
        else ""
    )
    chips = _chips((s, n) for s, n in page.counts if n)
    return f'<section class="tiles">{body}</section><div class="chips">{chips}</div>{note}'


def _models(page: Page) -> str:
    if not page.models:
        return ""
    lines = "".join(
        f"<tr><td><b>{esc(m.name)}</b><div class='meta mono'>{esc(m.model_id)}</div></td>"
        f'<td class="n ok">{m.succeeded}</td><td class="n">{m.failed}</td>'
        f'<td class="n">{m.other}</td><td class="n">${m.spend:,.2f}</td>'
        f'<td class="n">{esc(m.turnaround)}</td></tr>'
        for m in page.models
    )
    return (
        '<h2>Models</h2><table class="t"><thead><tr><th>model</th><th class="n">succeeded</th>'
        '<th class="n">failed</th><th class="n">other</th><th class="n">spend</th>'
        '<th class="n">avg. submit → ready</th></tr></thead>'
        f"<tbody>{lines}</tbody></table>"
    )


def _costs(page: Page) -> str:
    if not page.costs:
        return ""

    def money(value: float | None) -> str:
        return "—" if value is None else f"${value:,.2f}"

    lines = "".join(
        f"<tr><td><b>{esc(c.name)}</b><div class='meta mono'>{esc(c.model_id)}</div></td>"
        f'<td class="n">{c.billed} of {c.jobs}</td><td class="n">{money(c.estimate)}</td>'
        f'<td class="n">{money(c.actual)}</td>'
        f'<td class="n{" over" if c.over else ""}">{esc(c.difference)}</td></tr>'
        for c in page.costs
    )
    return (
        "<h2>Estimate vs actual <small>what RunComfy billed against the estimate, per model"
        '</small></h2><table class="t"><thead><tr><th>model</th><th class="n">billed</th>'
        '<th class="n">estimated</th><th class="n">actual</th><th class="n">difference</th>'
        f"</tr></thead><tbody>{lines}</tbody></table>"
    )


def _failures(page: Page) -> str:
    if not page.failures:
        return '<h2>Failures</h2><p class="ok">None: every finished job produced a video.</p>'
    lines = "".join(
        f'<tr id="{esc(f.anchor)}"><td class="mono">{esc(f.job_id)}</td><td>{esc(f.model)}</td>'
        f'<td><span class="chip s-{esc(f.state)}">{esc(f.state.replace("_", " "))}</span></td>'
        f'<td class="n">{esc(f.attempts)}</td><td class="reason">{esc(f.reason)}</td>'
        f"<td>{esc(f.prompt or '')}</td></tr>"
        for f in page.failures
    )
    return (
        f"<h2>Failures <small>{len(page.failures)}</small></h2>"
        '<table class="t"><thead><tr><th>job</th><th>model</th><th>state</th>'
        '<th class="n">attempts</th>'
        f"<th>reason</th><th>prompt</th></tr></thead><tbody>{lines}</tbody></table>"
    )


def render(page: Page) -> str:
    """The whole document."""
    sheets = "".join(_sheet(s) for s in page.sheets)
    loose = ""
    if page.loose:
        cards = "".join(_card(c, shared_prompt=None, titled=True) for c in page.loose)
        title = "Videos" if not page.sheets else "Other videos"
        loose = f'<h2>{title} <small>{len(page.loose)}</small></h2><div class="grid">{cards}</div>'
    if not sheets and not loose:
        loose = '<h2>Videos</h2><p class="meta">No video has been downloaded yet.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(page.batch)} · review</title><style>{STYLE}</style></head><body><main>"
        f"<header><h1>{esc(page.batch)}</h1>"
        f"<p>Review report · generated {esc(page.generated)} · manifest "
        f"<code>{esc(page.manifest)}</code></p></header>"
        f"{_summary(page)}{_models(page)}{_costs(page)}{sheets}{loose}{_failures(page)}"
        "<footer>Written by runcomfy-orchestrator. Videos and posters are files beside this "
        "page: move or zip the folder as a whole.</footer>"
        f"</main><script>{SCRIPT}</script></body></html>\n"
    )
