#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A real SMTP server on loopback for the e-mail report's tests (Debian's
python3-aiosmtpd), sharing no code with vmbackup's mailer.

    smtp_sink.py --port-file F --out-dir D [--tls-cert C --tls-key K]
                 [--auth-user U --auth-password-file P]

Listens on 127.0.0.1 at a port the OS picks and writes it to F. With a
certificate it offers STARTTLS and requires it; with a user it requires
AUTH (PLAIN or LOGIN) with that user and password. Every message received
is written to D as N.eml (the bytes) and N.json: the envelope, whether TLS
and AUTH were used, and the parts decoded by Python's email package:
{"mail_from", "rcpt_tos", "tls", "auth_user", "subject", "text", "html"}.
Runs until SIGTERM.
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        msg = email.message_from_bytes(envelope.content,
                                       policy=email.policy.default)
        text = html = ""
        for part in msg.walk():
            if part.get_content_type() == "text/plain":
                text = part.get_content()
            elif part.get_content_type() == "text/html":
                html = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": session.ssl is not None,
            "auth_user": (session.auth_data.login.decode()
                          if isinstance(session.auth_data, LoginPassword)
                          else ""),
            "subject": str(msg["subject"]),
            "text": text,
            "html": html,
        }
        base = os.path.join(self.out_dir, str(self.count))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if (isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)
    return check


async def serve(args):
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    password = None
    if args.auth_user:
        with open(args.auth_password_file, encoding="utf-8") as f:
            password = f.read().strip()
    sink = Sink(args.out_dir)

    def factory():
        return SMTP(sink, hostname="smtp-sink", tls_context=context,
                    require_starttls=context is not None,
                    auth_required=bool(args.auth_user),
                    auth_require_tls=context is not None,
                    authenticator=(authenticator(args.auth_user, password)
                                   if args.auth_user else None))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{port}\n")
    os.rename(args.port_file + ".tmp", args.port_file)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--auth-user")
    parser.add_argument("--auth-password-file")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
