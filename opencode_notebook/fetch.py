"""Fetch the messages of many sessions concurrently into one DataFrame."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pandas as pd

from opencode_notebook.errors import SessionNotFoundError
from opencode_notebook.models import Message

if TYPE_CHECKING:
    from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient

__all__ = ["aall_messages_frame", "all_messages_frame"]

logger = logging.getLogger("opencode_notebook")


def _session_ids(session_ids: str | Iterable[str]) -> list[str]:
    ids = [session_ids] if isinstance(session_ids, str) else list(session_ids)
    for session_id in ids:
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError(
                f"Invalid session id {session_id!r}: give ids such as 'ses_1'."
            )
    return list(dict.fromkeys(ids))


async def aall_messages_frame(
    client: OpenCodeClient | AsyncOpenCodeClient,
    session_ids: str | Iterable[str] | None = None,
    *,
    progress: bool = True,
    concurrency: int = 8,
) -> pd.DataFrame:
    """
    Fetch the messages of many sessions concurrently and build one DataFrame.

    The coroutine form of `all_messages_frame`; see there.
    """
    from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient

    valid = isinstance(concurrency, int) and not isinstance(concurrency, bool)
    if not valid or concurrency < 1:
        raise ValueError(
            f"Invalid concurrency {concurrency!r}: give a positive whole number."
        )
    if isinstance(client, OpenCodeClient):
        async_client = client.to_async()
        try:
            return await _fetch_frame(async_client, session_ids, progress, concurrency)
        finally:
            await async_client.aclose()
    if isinstance(client, AsyncOpenCodeClient):
        return await _fetch_frame(client, session_ids, progress, concurrency)
    raise TypeError(
        f"Invalid client {client!r}: give an OpenCodeClient or AsyncOpenCodeClient."
    )


async def _fetch_frame(
    client: AsyncOpenCodeClient,
    session_ids: str | Iterable[str] | None,
    progress: bool,
    concurrency: int,
) -> pd.DataFrame:
    # Imported on use because `frames` imports this module to re-export its functions.
    from opencode_notebook.frames import messages_frame

    listed = session_ids is None
    if session_ids is None:
        ids = [session.id for session in await client.list_sessions()]
    else:
        ids = _session_ids(session_ids)
    results: dict[str, list[Message] | None] = dict.fromkeys(ids)
    semaphore = asyncio.Semaphore(concurrency)
    bar = _progress_bar(len(ids)) if progress and ids else None

    async def fetch(session_id: str) -> None:
        async with semaphore:
            try:
                results[session_id] = await client.list_messages(session_id)
            except SessionNotFoundError:
                if not listed:
                    raise
                # Deleted between the listing and this request: nothing to keep.
                logger.warning("Session %s was deleted while fetching", session_id)
        if bar is not None:
            bar.update(1)

    try:
        async with asyncio.TaskGroup() as group:
            for session_id in ids:
                group.create_task(fetch(session_id))
    except BaseExceptionGroup as group_error:
        # Re-raise the first failure itself, so callers can catch the client's
        # exception types as they would for a single request.
        raise group_error.exceptions[0] from None
    finally:
        if bar is not None:
            bar.close()
    found = {key: value for key, value in results.items() if value is not None}
    return messages_frame(found)


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    # `delay` keeps short fetches quiet: the bar appears only after a second.
    return tqdm(total=total, desc="Fetching messages", unit="session", delay=1.0)


def all_messages_frame(
    client: OpenCodeClient | AsyncOpenCodeClient,
    session_ids: str | Iterable[str] | None = None,
    *,
    progress: bool = True,
    concurrency: int = 8,
) -> pd.DataFrame:
    """
    Fetch the messages of many sessions concurrently and build one DataFrame.

    Parameters
    ----------
    client : OpenCodeClient
        The client to fetch with. A synchronous client lends its settings to an
        `AsyncOpenCodeClient` that is closed afterwards. With an
        `AsyncOpenCodeClient`, ``await aall_messages_frame(client)`` instead.
    session_ids : list of str, optional
        The sessions to fetch, in the order wanted; by default every session of
        the instance, newest update first. A session deleted between the listing
        and its fetch is left out, with a warning in the log. A named session
        that does not exist raises `SessionNotFoundError`.
    progress : bool, default True
        Show a `tqdm` progress bar when the fetch takes more than a second.
    concurrency : int, default 8
        How many requests run at once.

    Returns
    -------
    pandas.DataFrame
        As `messages_frame` builds it, sessions in the order of `session_ids`.

    Notes
    -----
    This function runs its own event loop. Inside a running loop, as in a Jupyter
    kernel, it runs that loop in a worker thread and blocks until it finishes.
    """
    from opencode_notebook.client import AsyncOpenCodeClient

    if isinstance(client, AsyncOpenCodeClient):
        raise TypeError(
            "all_messages_frame needs an OpenCodeClient; with an "
            "AsyncOpenCodeClient, use `await aall_messages_frame(client)`."
        )
    coroutine = aall_messages_frame(
        client, session_ids, progress=progress, concurrency=concurrency
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
