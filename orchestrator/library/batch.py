"""A batch from Python: a manifest file, its content as a dict, or a list of rows.

>>> batch = Batch.from_rows([{"prompt": "a fox", "image": "fox.png"}], name="foxes",
...                         model="bytedance/seedance-1-0/lite/image-to-video",
...                         options=CatalogOptions(offline=True))
>>> result = batch.validate()
>>> result.ok, [str(p) for p in result.problems]  # doctest: +ELLIPSIS
(False, ["<rows>: job '#1': model ...: field 'image': image fox.png: file not found"])
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.defaults import DEFAULT_API_BASE
from orchestrator.engine.runner import Connection, MissingToken, token_from_environment
from orchestrator.library.checking import (
    CatalogOptions,
    existing_store,
    expand_checked,
    open_live_catalog,
    remember,
    writable_store,
)
from orchestrator.library.loops import off_the_loop
from orchestrator.library.results import Enqueued, Plan, Validation
from orchestrator.library.simulation import Simulation
from orchestrator.manifest import Expansion, expand_manifest, load_manifest
from orchestrator.planning import enqueue, output_root, stored_output_root, summarize
from orchestrator.problems import InputError
from orchestrator.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import TextIO

    from orchestrator.catalog import Catalog
    from orchestrator.library.results import RunResult
    from orchestrator.library.settings import RunOptions
    from orchestrator.livecatalog import LiveCatalog, ModelSource

#: What ``api=`` takes: a running simulator, an explicit connection, or None for RunComfy
#: with the token from the environment (RUNCOMFY_API_TOKEN or RUNCOMFY_TOKEN; the URL from
#: RUNCOMFY_API_BASE when set).
Api = Connection | Simulation | None
#: What ``db=`` takes: an SQLite path, an SQLAlchemy URL, or a store opened by the caller.
Db = str | os.PathLike[str] | Store


def connection_for(api: Api, *, required: bool = False) -> Connection:
    """The connection ``api`` names; when None, RunComfy (``RUNCOMFY_API_BASE`` or its
    public URL) with the environment's token (an empty one when there is none, unless
    ``required``: then an :class:`InputError`)."""
    if isinstance(api, Simulation):
        return api.connection
    if isinstance(api, Connection):
        return api
    try:
        token = token_from_environment()
    except MissingToken as exc:
        if required:
            from orchestrator.problems import Problem

            raise InputError(
                [Problem(f"{exc}; or pass api=orchestrator.simulate()", field="api")]
            ) from None
        token = ""
    return Connection(os.environ.get("RUNCOMFY_API_BASE") or DEFAULT_API_BASE, token)


def db_of(db: Db | None) -> str | Store | None:
    """``db`` as :mod:`.checking` takes it (a path as text)."""
    return db if db is None or isinstance(db, Store) else os.fspath(db)


@dataclass(frozen=True)
class Batch:
    """A batch to check, plan, enqueue and run; build one with :meth:`from_manifest`,
    :meth:`from_dict` or :meth:`from_rows`.

    Nothing is read until a method is called, and each call reads afresh (an edited
    manifest is seen). Every method works inside a running event loop too (a notebook's:
    the blocking work goes to a worker thread). Every method raises
    :class:`~orchestrator.problems.InputError`, whose ``problems`` name the file, line,
    job and field, for input it cannot use; :meth:`validate` returns them instead.
    """

    source: str
    """The manifest's path, or the name problems give a dict or rows (``<rows>``)."""
    load: Callable[..., Expansion] = field(repr=False)
    options: CatalogOptions = field(default_factory=CatalogOptions)
    out: Path | None = None
    """The output folder, over the manifest's ``output.dir``."""

    @classmethod
    def from_manifest(
        cls,
        path: str | os.PathLike[str],
        *,
        out: str | os.PathLike[str] | None = None,
        options: CatalogOptions | None = None,
    ) -> Batch:
        """The batch a manifest file describes (relative paths are the manifest's)."""
        shown = os.fspath(path)
        return cls(
            source=shown,
            load=lambda **kw: load_manifest(shown, **kw),
            options=options or CatalogOptions(),
            out=None if out is None else Path(out),
        )

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        base_dir: str | os.PathLike[str] = ".",
        source: str = "<dict>",
        out: str | os.PathLike[str] | None = None,
        options: CatalogOptions | None = None,
    ) -> Batch:
        """The batch a manifest's content describes (``batch:``, ``model:``, ``jobs:``
        ...); image paths, ``jobs_from`` and ``output.dir`` are relative to ``base_dir``."""
        content = dict(data)
        base = Path(base_dir)
        return cls(
            source=source,
            load=lambda **kw: expand_manifest(content, source=source, base_dir=base, **kw),
            options=options or CatalogOptions(),
            out=None if out is None else Path(out),
        )

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        *,
        name: str,
        model: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        output: Mapping[str, Any] | None = None,
        limits: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | None = None,
        base_dir: str | os.PathLike[str] = ".",
        out: str | os.PathLike[str] | None = None,
        options: CatalogOptions | None = None,
    ) -> Batch:
        """A batch named ``name`` with one job per row (``prompt``, ``image``, ``model``,
        ``id``, ``seed``, ... as a manifest's jobs have them); ``model``, ``defaults``,
        ``output``, ``limits`` and ``retry`` are the manifest's keys of the same names.
        Problems name the row as job ``#N``."""
        given = {
            "model": model,
            "defaults": defaults,
            "output": output,
            "limits": limits,
            "retry": retry,
        }
        data: dict[str, Any] = {"batch": name, "jobs": [dict(row) for row in rows]}
        data.update({key: value for key, value in given.items() if value is not None})
        return cls.from_dict(data, base_dir=base_dir, source="<rows>", out=out, options=options)

    # -- checking --------------------------------------------------------------------------

    def _expand(self, catalog: Catalog) -> Expansion:
        return expand_checked(self.load, catalog, self.options, self.out)

    @contextmanager
    def checked(self, db: Db | None, api: Api, *, required: bool = False) -> Iterator[Checked]:
        """The batch checked against the catalog of the API ``api`` names, with the store
        when it exists (never created here). What the API answered is cached in the store
        when the block ends, even when the batch is refused: the entries are the API's,
        whatever the batch says. ``required``: a token is needed (a run)."""
        connection = connection_for(api, required=required)
        with existing_store(db_of(db)) as store:
            live = self._catalog(store, connection, api)
            try:
                yield Checked(self._expand(live), live, connection, store)
            finally:
                if store is not None:
                    remember(live, store, connection)

    def validate(self, *, db: Db | None = None, api: Api = None) -> Validation:
        """Check every job against its model's schema and rules, and the output side;
        nothing is stored or submitted. The store's catalog cache is read when ``db``
        exists; with a token, each model's schema is asked of the API."""
        return off_the_loop(self._validate, db, api)

    def _validate(self, db: Db | None, api: Api) -> Validation:
        try:
            with self.checked(db, api) as done:
                expansion = done.expansion
        except InputError as exc:
            return Validation(None, exc.problems, [])
        return Validation(
            batch=expansion.settings.batch,
            problems=[],
            warnings=list(expansion.warnings),
            models={m: len(jobs) for m, jobs in expansion.by_model().items()},
            sources=done.sources(),
            expansion=expansion,
        )

    def plan(self, *, db: Db | None = None, api: Api = None) -> Plan:
        """The jobs per model, which are new, stored or done, and the cost of the new."""
        return off_the_loop(self._plan, db, api)

    def _plan(self, db: Db | None, api: Api) -> Plan:
        states: dict[str, str] = {}
        with self.checked(db, api) as done:
            if done.store is not None:
                stored = done.store.states_by_key(done.expansion.settings.batch)
                states = {key: state.value for key, state in stored.items()}
        return Plan(
            summary=summarize(done.expansion, states),
            states=states,
            output_root=self.root(done.expansion),
            sources=done.sources(),
            expansion=done.expansion,
        )

    def enqueue(self, *, db: Db, api: Api = None) -> Enqueued:
        """Check the batch and add its new jobs to the store (created when missing);
        submits nothing. Jobs already stored (same key) are left as they are."""
        return off_the_loop(self._enqueue, db, api)

    def _enqueue(self, db: Db, api: Api) -> Enqueued:
        with self.checked(db, api) as done:
            pass
        expansion, root = done.expansion, self.root(done.expansion)
        with writable_store(db_of(db) or "") as store:
            remember(done.live, store, done.connection)
            kept = stored_output_root(store, expansion.settings.batch)
            result = enqueue(store, expansion, root)
        return Enqueued(
            batch=expansion.settings.batch,
            added=result.added,
            existing=result.existing,
            renamed=list(result.renamed),
            output_root=Path(kept) if kept is not None else root,
            requested_root=root,
            sources=done.sources(),
        )

    def _catalog(self, store: Store | None, connection: Connection, api: Api) -> LiveCatalog:
        # The simulator's catalog is asked afresh every time (it is served, not cached).
        ttl = 0.0 if isinstance(api, Simulation) else None
        return open_live_catalog(store, connection, self.options, ttl=ttl)

    # -- running ---------------------------------------------------------------------------

    def run(
        self,
        *,
        db: Db,
        api: Api = None,
        options: RunOptions | None = None,
        stop_on_signals: bool = False,
        progress: TextIO | None = None,
    ) -> RunResult:
        """Enqueue the batch and work until every job of it is finished (see
        :func:`orchestrator.run`)."""
        from orchestrator.library import running

        return running.run(
            self,
            db=db,
            api=api,
            options=options,
            stop_on_signals=stop_on_signals,
            progress=progress,
        )

    async def run_async(
        self,
        *,
        db: Db,
        api: Api = None,
        options: RunOptions | None = None,
        progress: TextIO | None = None,
    ) -> RunResult:
        """:meth:`run`, awaited in the caller's event loop (see
        :func:`orchestrator.run_async`)."""
        from orchestrator.library import running

        return await running.run_async(self, db=db, api=api, options=options, progress=progress)

    def root(self, expansion: Expansion) -> Path:
        """The output folder this batch asks for (``out``, else ``output.dir``)."""
        return output_root(expansion, None if self.out is None else str(self.out))

    def with_options(self, **changes: Any) -> Batch:
        """The same batch with other :class:`CatalogOptions` (``offline=True`` ...)."""
        return replace(self, options=replace(self.options, **changes))


@dataclass(frozen=True)
class Checked:
    """A batch checked: its expansion, the catalog it was checked against, the API
    connection, and the store when it exists."""

    expansion: Expansion
    live: LiveCatalog
    connection: Connection
    store: Store | None

    def sources(self) -> dict[str, ModelSource]:
        """Where each model of the batch came from."""
        live = self.live
        return {m: live.sources[m] for m in self.expansion.by_model() if m in live.sources}


#: A batch, or the path of its manifest.
BatchLike = Batch | str | os.PathLike[str]


def as_batch(batch: BatchLike) -> Batch:
    """``batch`` itself, or the batch its manifest path describes."""
    return batch if isinstance(batch, Batch) else Batch.from_manifest(batch)
