"""The SSH transport: the only package that imports asyncssh.

`executor` implements executors.base.Executor over SSH; `connect` reaches
hosts (pools, jump hosts, host keys, `scan`), `pool` shares connections per
host entry, `commands` runs one bounded command, `uploads` writes run dirs
by SFTP, `remote` holds the shell scripts it sends.
"""
