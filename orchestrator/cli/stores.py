"""The store as the commands see it: opened only when it exists for a command that reads,
and the batch or model a command names checked against what it holds."""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cli.exits import CommandError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.store import Store


def no_store_message(db: str, folder: Path | None = None) -> str:
    """``no store at DB`` with the stores (``*.db`` files) there are in ``folder`` (the
    current one), so that a mistyped or forgotten ``--db`` is one look away.

    >>> no_store_message("x.db", Path("/nonexistent")).split(";")[0]
    'no store at x.db (no .db file in this folder)'
    """
    here = folder if folder is not None else Path.cwd()
    found = sorted(p.name for p in here.glob("*.db") if p.is_file())
    if found:
        return f"no store at {db}; stores in this folder: {', '.join(found)} (pass one with --db)"
    return (
        f"no store at {db} (no .db file in this folder); 'orchestrator enqueue MANIFEST' or "
        "'orchestrator run MANIFEST' creates one"
    )


@contextmanager
def existing_store(db: str) -> Iterator[Store]:
    """The store at ``db``; :class:`CommandError` (exit 2) when there is none: a command
    that reads never creates an empty store (the library's ``open_existing``)."""
    from orchestrator.library.reading import open_existing

    with ExitStack() as stack:
        with said_as_usage(db):
            store = stack.enter_context(open_existing(db))
        yield store


def store_if_any(db: str) -> AbstractContextManager[Store | None]:
    """The store when it exists already (read for its catalog cache), else None."""
    from orchestrator.library.checking import existing_store as store_or_none

    return store_or_none(db)


def check_batch(store: Store, batch: str | None, db: str) -> None:
    """Nothing when ``batch`` is None or stored; else :class:`CommandError` (exit 2) that
    lists the batches the store holds (the library's ``known_batch``)."""
    from orchestrator.library.reading import known_batch

    with said_as_usage(db):
        known_batch(store, batch)


@contextmanager
def said_as_usage(db: str) -> Iterator[None]:
    """The library's "no store" and "no such batch" as the command line says them: a
    :class:`CommandError` (exit 2) naming the stores here, or the batches of the store."""
    from orchestrator.library.reading import NoStore, UnknownBatch

    try:
        yield
    except NoStore:
        raise CommandError(no_store_message(db)) from None
    except UnknownBatch as exc:
        known = ", ".join(exc.names) if exc.names else "none yet"
        raise CommandError(f"no batch {exc.batch!r} in {db}; its batches: {known}") from None


def resolve_model(store: Store, batch: str | None, wanted: str, catalog_dir: str | None) -> str:
    """The model id that ``wanted`` names among the models of the stored jobs: the id, the
    slug (the folder name of its videos, e.g. ``runway-gen-4-turbo``) or the display name
    (any case). :class:`CommandError` (exit 2) lists the known ones otherwise."""
    from orchestrator.catalog import load_catalog, model_slug

    catalog = load_catalog(catalog_dir)
    known: list[tuple[str, str, str]] = []
    for model_id in sorted(store.counts_by_model(batch)):
        spec = catalog.get(model_id)
        slug = spec.slug if spec is not None else model_slug(model_id)
        known.append((model_id, slug, spec.display_name if spec is not None else ""))
    folded = wanted.strip().casefold()
    for model_id, slug, name in known:
        if folded in (model_id.casefold(), slug.casefold(), name.casefold()):
            return model_id
    listed = "; ".join(
        f"{model_id} ({slug}{', ' + name if name else ''})" for model_id, slug, name in known
    )
    raise CommandError(f"no job of model {wanted!r}; the models stored: {listed or 'none'}")
