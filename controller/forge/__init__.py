"""Pull requests and comments on Forgejo, Gitea and GitHub behind one Protocol.

`Forge` (base.py) is what the engine calls, in worker threads
(`asyncio.to_thread`): find or open a task's PR once, comment on it, read its
state and its reviews. `forge_from_settings` (factory.py) builds the client
from the config's `forge:` block; `on_forge` (repos.py) says whether a task's
`repo` lives on that forge. Imports only the standard library and the
package's own version: HTTP is urllib (transport.py), so no other package
talks to a forge and no token leaves this package.
"""
from controller.forge.base import (Forge, ForgeError, ForgePR, ForgeReview, PRState,
                                   PRStatus, ReviewState)
from controller.forge.factory import ForgeSettingsError, forge_from_settings, make_forge
from controller.forge.repos import (RepoRef, RepoURLError, matches_full_name, on_forge,
                                    parse_repo_url, redact)

__all__ = [
    "Forge", "ForgeError", "ForgePR", "ForgeReview", "ForgeSettingsError", "PRState",
    "PRStatus", "RepoRef", "RepoURLError", "ReviewState", "forge_from_settings",
    "make_forge", "matches_full_name", "on_forge", "parse_repo_url", "redact",
]
