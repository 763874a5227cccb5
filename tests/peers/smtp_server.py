"""An SMTP server for tocsin's e-mail tests, on aiosmtpd (PyPI).

Listens on 127.0.0.1:PORT. Every accepted message is written to OUT_DIR as one JSON
file: the envelope (sender, recipients), whether the session was TLS and authenticated,
the raw header block (as sent, so tests can check the encoding), the headers decoded
(RFC 2047) and every MIME leaf part decoded (content type, charset, disposition, text).

Security: --cert/--key turn on STARTTLS and require it before MAIL; with --implicit-tls
the listener is TLS from the first byte instead (SMTPS). --auth USER:PASSWORD requires
AUTH (PLAIN/LOGIN, after TLS).

Fault injection by the recipient's local part:
  tempfail...@  451 4.3.0 at RCPT, always
  reject...@    550 5.1.1 at RCPT (mailbox does not exist)
  policy...@    550 5.7.1 at RCPT (refused by policy; not about the mailbox)
  flaky...@     451 at RCPT for the first --flaky-failures attempts of that address, then accepted
  slow...@      RCPT answered after --slow-ms, then accepted
  drop...@      the first attempt of that address: the connection is cut after the
                message data arrived, before the reply (nothing stored); later accepted

Prints "ready <port>" on stdout once listening.
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import logging
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out_dir, flaky_failures, slow_ms):
        self.out_dir = out_dir
        self.flaky_failures = flaky_failures
        self.slow = slow_ms / 1000.0
        self.attempts = {}
        self.dropped = set()
        self.counter = itertools.count()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        n = self.attempts.get(address, 0) + 1
        self.attempts[address] = n
        if local.startswith("tempfail"):
            return "451 4.3.0 Temporary failure, try again later"
        if local.startswith("reject"):
            return "550 5.1.1 Mailbox does not exist"
        if local.startswith("policy"):
            return "550 5.7.1 Message refused by policy"
        if local.startswith("flaky") and n <= self.flaky_failures:
            return "451 4.7.1 Greylisted, try again later"
        if local.startswith("slow"):
            await asyncio.sleep(self.slow)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            local = rcpt.split("@", 1)[0].lower()
            if local.startswith("drop") and rcpt not in self.dropped:
                self.dropped.add(rcpt)
                # Cut the connection mid-transaction: the client sent the message and
                # never gets a reply. The handler is cancelled with the connection.
                server.transport.abort()
                await asyncio.sleep(30)
        raw = envelope.original_content or envelope.content
        self.store(server, session, envelope, raw)
        return "250 2.0.0 OK queued"

    def store(self, server, session, envelope, raw):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                body = part.get_content()
            except Exception as e:  # noqa: BLE001 - stored for the test to see
                body = f"<undecodable: {e}>"
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    "disposition": part.get_content_disposition(),
                    "transfer_encoding": part.get("Content-Transfer-Encoding"),
                    "body": body if isinstance(body, str) else repr(body),
                }
            )
        headers = {}
        for name, value in msg.items():
            headers.setdefault(name.lower(), []).append(str(value))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            # STARTTLS sets session.ssl; an implicit-TLS listener shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "seven_bit": all(b < 128 for b in raw),
            "raw_head": head,
            "content_type": msg.get_content_type(),
            "headers": headers,
            "parts": parts,
        }
        name = f"{next(self.counter):06d}-{os.getpid()}.json"
        tmp = os.path.join(self.out_dir, "." + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(tmp, os.path.join(self.out_dir, name))


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok)

    return check


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--auth", help="USER:PASSWORD")
    p.add_argument("--flaky-failures", type=int, default=2)
    p.add_argument("--slow-ms", type=int, default=1000)
    a = p.parse_args()
    # aiosmtpd warns about its own deprecated Session.login_data on every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    os.makedirs(a.out, exist_ok=True)

    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    handler = Handler(a.out, a.flaky_failures, a.slow_ms)
    kwargs = {"hostname": "localhost", "timeout": 30}
    if ctx is not None and not a.implicit_tls:
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.auth:
        user, password = a.auth.split(":", 1)
        kwargs.update(authenticator=authenticator(user, password), auth_required=True)
        if ctx is None:
            kwargs.update(auth_require_tls=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, loop=loop, **kwargs),
        "127.0.0.1",
        a.port,
        ssl=ctx if a.implicit_tls else None,
    )
    print(f"ready {a.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
