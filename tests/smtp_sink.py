"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives: where the tests' failure
alerts go, through an `smtp_default` Connection (`connection`)."""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

from shopstream.devstack.processes import free_port


@dataclass
class Mailbox:
    port: int
    received: list[EmailMessage] = field(default_factory=list)

    def connection(self) -> dict:
        """The Airflow Connection (JSON form) that sends to this server: plain SMTP, no login."""
        plain = {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@shop.example"}
        return {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": plain}


@contextlib.contextmanager
def smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox(free_port())

    class Keep:
        async def handle_DATA(self, server, session, envelope):
            mailbox.received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    server = Controller(Keep(), hostname="127.0.0.1", port=mailbox.port)
    server.start()
    try:
        yield mailbox
    finally:
        server.stop()
