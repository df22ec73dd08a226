"""Pull requests and comments on Forgejo, Gitea and GitHub behind one Protocol.

Empty for now: the next issue ("The front door") builds it. Imports the
vocabulary only; the engine drives it.
"""
