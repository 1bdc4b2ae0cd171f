"""A real SMTP server for the tests (aiosmtpd): every message the app hands over is kept, parsed, to read
back. Temporary (4xx) or permanent (5xx) refusals can be asked for by recipient address."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class MailSink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        #: recipient address -> SMTP answer to give for it (e.g. "451 4.3.0 try later")
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.host = "127.0.0.1"
        self._controller = Controller(self, hostname=self.host, port=self.port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        answer = self.refuse.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        parsed["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._lock:
            self.messages.append(parsed)
        return "250 Message accepted"

    def received(self, matches: Callable[[EmailMessage], bool] = lambda _m: True) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if matches(m)]

    def wait_for(
        self, matches: Callable[[EmailMessage], bool], count: int = 1, timeout: float = 60
    ) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(matches)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"{count} message(s) did not arrive within {timeout} s; got {len(self.received())}"
        )
