"""The SSH transport: the only package that imports asyncssh.

`executor` implements executors.base.Executor over SSH, `pool` shares
connections per host entry, `remote` holds the shell scripts it sends.
"""
