"""Actions -> runs on hosts: the Executor protocol and its two transports.

`base` is the interface the engine talks to; `rundir` and `runwrapper.sh`
are the run directory both transports share; `shell` is the one quoting
function; `local` runs on this box; `ssh/` on other machines (the only
asyncssh user); `parsers/` read an agent's stdout. Imports the vocabulary only.
"""
