"""A real SMTP server for heimweg's mail tests: aiosmtpd with STARTTLS required (or implicit
TLS) and AUTH PLAIN/LOGIN against one user, saving every accepted mail as NNNNNN.eml in a
directory before it answers 250 (so a test needs no polling). Prints "READY <port>" once it
listens. Recipients starting with "bounce" are refused for good (550), those starting with
"busy" for now (451): the cases a queue must tell apart.

usage: smtp_server.py MAILDIR CERT KEY USER PASSWORD [--implicit-tls] [--port N]
"""
import argparse
import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Saver:
    def __init__(self, maildir):
        self.maildir = maildir
        self.count = len(os.listdir(maildir))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.maildir, "%06d.eml" % self.count)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-From: %s\r\n" % envelope.mail_from.encode())
            f.write(b"X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos).encode())
            user = session.auth_data.login.decode() if session.auth_data else "-"
            f.write(b"X-Auth-User: %s\r\n" % user.encode())
            f.write(envelope.original_content)
        os.rename(tmp, path)
        return "250 2.0.0 saved"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("maildir")
    p.add_argument("cert")
    p.add_argument("key")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == a.user.encode()
            and auth_data.password == a.password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    handler = Saver(a.maildir)

    def factory():
        return SMTP(
            handler,
            hostname="mail.test",
            require_starttls=not a.implicit_tls,
            tls_context=None if a.implicit_tls else ctx,
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=True,
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, "127.0.0.1", a.port, ssl=ctx if a.implicit_tls else None
        )
        print("READY %d" % server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
