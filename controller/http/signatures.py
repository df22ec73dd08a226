"""Webhook signatures: which headers each forge family uses, and the HMAC check.

Called by webhooks.py before anything in a body is read. Forgejo and Gitea send
the bare lowercase hex HMAC-SHA256 of the raw body; GitHub sends `sha256=<hex>`
in X-Hub-Signature-256. The comparison is hmac.compare_digest over bytes, so a
header that is not ASCII is merely wrong, never an exception. No message here
ever contains the secret or a signature.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from controller.events import Forge


@dataclass(frozen=True, slots=True)
class HeaderFamily:
    """The headers one forge family sends with each delivery."""
    event: str
    delivery: str
    signature: str
    prefix: str            # what comes before the hex digest in the signature header


FAMILIES = {
    Forge.FORGEJO: HeaderFamily("X-Forgejo-Event", "X-Forgejo-Delivery", "X-Forgejo-Signature", ""),
    Forge.GITEA: HeaderFamily("X-Gitea-Event", "X-Gitea-Delivery", "X-Gitea-Signature", ""),
    Forge.GITHUB: HeaderFamily("X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256",
                               "sha256="),
}


def sign(secret: str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of `body`: what the forge puts in the header."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_header(forge: Forge, secret: str, body: bytes) -> tuple[str, str]:
    """(header, value) a forge of this family would send; for tests and tools."""
    family = FAMILIES[forge]
    return family.signature, family.prefix + sign(secret, body)


def check(forge: Forge, secret: str, body: bytes, given: str | None) -> str | None:
    """None when `given` is the body's signature; else why not, for a 401."""
    family = FAMILIES[forge]
    if not given:
        return f"missing {family.signature} header: sign the body with the webhook secret"
    expected = (family.prefix + sign(secret, body)).encode("ascii")
    # WSGI hands headers over as latin-1 strings: every one encodes, none raises.
    if not hmac.compare_digest(expected, given.strip().encode("latin-1")):
        return f"{family.signature} does not match the body: check the webhook secret"
    return None
