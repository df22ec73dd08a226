"""Make the one Forge of a controller from its `forge:` settings.

The composition root calls `forge_from_settings(config.forge, os.environ)`:
it checks the settings, reads the token from the variable `token_env` names
(once, here; the token is then kept in a Secret that never prints), and
hands back a client. `make_forge` is the same with the token given, for tests
and tools. Nothing here talks to the network.
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from controller.forge.base import Forge
from controller.forge.forgejo import ForgejoForge
from controller.forge.github import GitHubForge
from controller.forge.repos import redact
from controller.forge.transport import Secret

KINDS = ("forgejo", "gitea", "github")
DEFAULT_TOKEN_ENV = "FLEET_FORGE_TOKEN"


class ForgeSettingsError(ValueError):
    """`forge:` settings that cannot work; the message says which key to fix."""


def make_forge(kind: str, url: str, api_url: str | None, token: str | Secret, *,
               timeout: float = 20.0) -> Forge:
    """A client for the forge of `kind` at web address `url`.

    `api_url` None means the default: url + /api/v1 (Forgejo, Gitea),
    https://api.github.com for github.com, url + /api/v3 for GitHub Enterprise.
    """
    if kind not in KINDS:
        raise ForgeSettingsError(f"forge.type {kind!r} is not one of {', '.join(KINDS)}")
    _check_url("forge.url", url)
    if api_url is not None:
        _check_url("forge.api_url", api_url)
    secret = token if isinstance(token, Secret) else Secret(token)
    if not secret.reveal():
        raise ForgeSettingsError("the forge token is empty")
    if kind == "github":
        return GitHubForge(url, api_url, secret, timeout=timeout)
    return ForgejoForge(url, api_url, secret, flavour=kind, timeout=timeout)


def forge_from_settings(settings: Mapping[str, Any], environ: Mapping[str, str]) -> Forge:
    """A client from the config's `forge:` mapping, its token read from `environ`."""
    unknown = sorted(set(settings) - {"type", "url", "api_url", "token_env"})
    if unknown:
        raise ForgeSettingsError(f"unknown forge settings: {', '.join(unknown)}")
    kind, url = settings.get("type"), settings.get("url")
    if not isinstance(kind, str) or not isinstance(url, str):
        raise ForgeSettingsError("forge needs `type` (forgejo, gitea or github) and `url`")
    api_url = settings.get("api_url")
    if api_url is not None and not isinstance(api_url, str):
        raise ForgeSettingsError("forge.api_url must be a URL")
    token_env = settings.get("token_env") or DEFAULT_TOKEN_ENV
    if not isinstance(token_env, str):
        raise ForgeSettingsError("forge.token_env must name an environment variable")
    token = environ.get(token_env, "")
    if not token:
        raise ForgeSettingsError(
            f"the forge token is missing: set the environment variable {token_env} "
            "(named by forge.token_env) for the controller")
    return make_forge(kind, url, api_url, Secret(token))


def _check_url(key: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForgeSettingsError(f"{key} must be an http(s) URL, not {redact(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise ForgeSettingsError(f"{key} must not hold credentials ({redact(url)!r}): "
                                 "put the token in the variable forge.token_env names")
    if parts.query or parts.fragment:
        raise ForgeSettingsError(f"{key} must have no query or fragment: {redact(url)!r}")
