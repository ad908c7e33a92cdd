"""
Test helpers for streamed replies: the gateway's event stream as bytes, and a
display publisher that applies output updates the way a notebook front end does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying `payload` as JSON."""
    return f"data: {json.dumps(payload)}\n\n".encode()


def echo_events(
    session_id: str, user_id: str, reply_id: str, response: str
) -> list[dict[str, Any]]:
    """The gateway's events for a turn that writes `response` word by word."""
    words = response.split(" ")
    chunks = [word + " " for word in words[:-1]] + [words[-1]]
    events: list[dict[str, Any]] = [
        {"type": "start", "sessionId": session_id, "userMessageId": user_id}
    ]
    events += [
        {
            "type": "delta",
            "messageId": reply_id,
            "partId": "prt_1",
            "kind": "text",
            "text": chunk,
        }
        for chunk in chunks
        if chunk
    ]
    events.append({"type": "step", "messageId": reply_id, "reason": "stop"})
    events.append({"type": "reply", "messageId": reply_id, "response": response})
    return events


@dataclass
class Published:
    """One call of the display publisher."""

    data: dict[str, Any]
    display_id: str | None
    update: bool


class RecordingPublisher(DisplayPublisher):
    """A display publisher that keeps every output and update it is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.calls: list[Published] = []

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        display_id = (transient or {}).get("display_id")
        self.calls.append(Published(dict(data), display_id, update))

    @property
    def updates(self) -> list[Published]:
        return [call for call in self.calls if call.update]

    def outputs(self) -> list[dict[str, Any]]:
        """The outputs a front end would show now: each update replaces its output."""
        shown: list[Published] = []
        for call in self.calls:
            if not call.update:
                shown.append(call)
                continue
            for index, output in enumerate(shown):
                if output.display_id == call.display_id:
                    shown[index] = Published(call.data, call.display_id, False)
        return [output.data for output in shown]


@contextmanager
def recording_display(shell: InteractiveShell) -> Iterator[RecordingPublisher]:
    """Give `shell` a recording publisher, as if it ran in a notebook front end."""
    original = shell.display_pub
    publisher = RecordingPublisher(shell=shell)
    shell.display_pub = publisher
    try:
        yield publisher
    finally:
        shell.display_pub = original
