"""The controller config file: typed values, defaults, and a clear error for each bad value."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controller.config import (DEFAULT_ADMIN_LISTEN, Config, ConfigError, ForgeConfig, ForgeType,
                               PullAgent, SSHConfig, load_config)

DIGEST = hashlib.sha256(b"secret-token").hexdigest()


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "controller.yaml"
    path.write_text(text)
    return load_config(str(path))


def test_no_file_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_CONFIG", raising=False)
    monkeypatch.delenv("FLEET_WEBHOOK_SECRET", raising=False)
    config = load_config(None)
    assert config == Config()
    assert (config.admin_listen, config.lease_ttl) == (DEFAULT_ADMIN_LISTEN, 120.0)
    assert (config.forge, config.pull_agents, config.allowed_repos, config.reviewers) == (
        None, (), (), ())


def test_every_key_becomes_a_typed_value(tmp_path: Path) -> None:
    config = load(tmp_path, f"""\
repo: /srv/fleet.git
branch: trunk
admin_listen: "[::1]:9000"
poll_interval: 30s
ssh: {{connect_timeout: 5s, keepalive_count_max: 2}}
allowed_repos: ["https://forge.example/team/*", "git@forge.example:team/*.git"]
reviewers: [alice, bob]
forge:
  type: forgejo
  url: https://forge.example/
pull_agents:
  - name: jeeves
    token_sha256: {DIGEST}
    capabilities: [codex, gpu, codex]
    max_concurrent: 2
  - name: wooster
    token_sha256: "{"0" * 64}"   # all digits: quoted, or YAML reads a number
lease_ttl: 5m
""")
    assert (config.repo, config.branch, config.admin_listen, config.poll_interval) == (
        "/srv/fleet.git", "trunk", "[::1]:9000", 30.0)
    assert config.ssh == SSHConfig(connect_timeout=5.0, keepalive_count_max=2)
    assert config.allowed_repos == ("https://forge.example/team/*", "git@forge.example:team/*.git")
    assert config.reviewers == ("alice", "bob")
    assert config.forge == ForgeConfig(ForgeType.FORGEJO, "https://forge.example",
                                       "https://forge.example/api/v1", "FLEET_FORGE_TOKEN")
    assert config.pull_agents == (PullAgent("jeeves", DIGEST, ("codex", "gpu"), 2),
                                  PullAgent("wooster", "0" * 64, (), 1))
    assert config.lease_ttl == 300.0


@pytest.mark.parametrize("forge, api", [
    ("{type: gitea, url: 'http://127.0.0.1:3000'}", "http://127.0.0.1:3000/api/v1"),
    ("{type: github, url: 'https://github.com'}", "https://api.github.com"),
    ("{type: github, url: 'https://ghe.example'}", "https://ghe.example/api/v3"),
    ("{type: forgejo, url: 'https://f.example', api_url: 'https://api.f.example/v1/'}",
     "https://api.f.example/v1"),
])
def test_the_forge_api_url_defaults_by_type(tmp_path: Path, forge: str, api: str) -> None:
    config = load(tmp_path, f"forge: {forge}\n")
    assert config.forge is not None and config.forge.api_url == api


def test_forge_token_env_names_a_variable(tmp_path: Path) -> None:
    config = load(tmp_path, "forge: {type: github, url: 'https://github.com', token_env: GH_TOKEN}\n")
    assert config.forge is not None and config.forge.token_env == "GH_TOKEN"


AGENT = f"name: jeeves, token_sha256: {DIGEST}"


@pytest.mark.parametrize("text, words", [
    ("pull_agents: 5\n", ["pull_agents:", "list of agents", "5"]),
    ("pull_agents: [jeeves]\n", ["pull_agents[0]:", "mapping", "token_sha256"]),
    (f"pull_agents: [{{{AGENT}, token: x}}]\n", ["pull_agents[0]: unknown key 'token'"]),
    (f"pull_agents: [{{token_sha256: {DIGEST}}}]\n", ["pull_agents[0].name:", "None"]),
    (f"pull_agents: [{{name: Jeeves, token_sha256: {DIGEST}}}]\n", ["pull_agents[0].name:", "Jeeves"]),
    ("pull_agents: [{name: jeeves}]\n", ["pull_agents[0].token_sha256:", "64 lowercase hex"]),
    (f"pull_agents: [{{name: j, token_sha256: {DIGEST.upper()}}}]\n", ["token_sha256:", "lowercase"]),
    ("pull_agents: [{name: j, token_sha256: abc123}]\n", ["token_sha256:", "sha256sum", "abc123"]),
    (f"pull_agents: [{{{AGENT}, capabilities: codex}}]\n", ["capabilities:", "list", "codex"]),
    (f"pull_agents: [{{{AGENT}, capabilities: [GPU]}}]\n", ["capabilities:", "GPU"]),
    (f"pull_agents: [{{{AGENT}, max_concurrent: 0}}]\n", ["max_concurrent:", ">= 1", "0"]),
    (f"pull_agents: [{{{AGENT}, max_concurrent: true}}]\n", ["max_concurrent:", ">= 1"]),
    (f"pull_agents: [{{{AGENT}}}, {{{AGENT}}}]\n", ["pull_agents[1].name:", "earlier agent"]),
    (f"pull_agents: [{{{AGENT}}}, {{name: other, token_sha256: {DIGEST}}}]\n",
     ["pull_agents[1].token_sha256:", "same token"]),
    ("forge: forgejo\n", ["forge:", "mapping", "type: forgejo"]),
    ("forge: {url: 'https://f.example'}\n", ["forge.type:", "forgejo, gitea, github", "None"]),
    ("forge: {type: gitlab, url: 'https://f.example'}\n", ["forge.type:", "'gitlab'"]),
    ("forge: {type: gitea}\n", ["forge.url:", "http(s) URL", "None"]),
    ("forge: {type: gitea, url: forge.example}\n", ["forge.url:", "'forge.example'"]),
    ("forge: {type: gitea, url: 'https://f.example', api_url: 3}\n", ["forge.api_url:", "URL"]),
    ("forge: {type: gitea, url: 'https://f.example', token_env: 'my token'}\n",
     ["forge.token_env:", "environment variable", "'my token'"]),
    ("forge: {type: gitea, url: 'https://f.example', token: abc}\n", ["forge: unknown key 'token'"]),
    ("lease_ttl: soon\n", ["lease_ttl:", "'soon'", "duration"]),
    ("lease_ttl: 0\n", ["lease_ttl:", "positive"]),
    ("admin_listen: 8081\n", ["admin_listen:", "HOST:PORT", "8081"]),
    ("admin_listen: 'localhost:99999'\n", ["admin_listen:", "HOST:PORT"]),
    ("allowed_repos: https://forge.example/team/*\n", ["allowed_repos:", "list of URL patterns"]),
    ("allowed_repos: ['']\n", ["allowed_repos:", "list"]),
    ("reviewers: [alice, alice]\n", ["reviewers:", "'alice' is listed twice"]),
    ("reviewers: [1]\n", ["reviewers:", "user names"]),
])
def test_a_bad_value_is_a_clear_error(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'controller.yaml'}: ")
    for word in words:
        assert word in message, message
