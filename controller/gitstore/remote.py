"""The real `git` command against the fleet repository: fetch, push, compare-and-swap.

Owned by store.GitStore, which hands it to write.StatusWriter: the network
goes through git itself, so the user's SSH config, credential helpers and
known_hosts apply. No pygit2 here; it runs git in a clone given by path.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from controller.gitstore.common import GitError, _is_local, _last_lines, tracking_ref


class Remote:
    """One branch of the source repository, reached with the git command.

    `local`: the source is on this machine (a push then skips compression)."""

    def __init__(self, source: str, branch: str, timeout: float, local: bool):
        self._source = source
        self._branch = branch
        self._tracking = tracking_ref(branch)
        self._timeout = timeout      # seconds, for each git command
        self._local = local
        self.branch = branch
        self.last_rejection = ""     # git's words when push or swap last lost a race

    def fetch(self, clone: Path, had_tip: bool, also: Remote | None = None) -> None:
        """Fetch the branch into clone's origin/<branch>. had_tip: the clone had
        fetched the branch before, so its absence now is an error, not an empty
        repository. `also`: another branch of the same source fetched by the
        same git command (the status branch), which must exist."""
        if _is_local(self._source) and not Path(self._source).exists():
            raise GitError(f"fleet repository {self._source} does not exist: "
                           "check --repo (a path to a bare repository, or a URL)")
        # Forced refspec: the controller follows the source even if it was rewritten.
        proc = self.git(clone, "fetch", "--quiet", "--no-tags", "origin",
                        *(f"+refs/heads/{r._branch}:{r._tracking}" for r in (self, also) if r))
        if proc.returncode == 0:
            return
        if also is not None and f"couldn't find remote ref refs/heads/{also._branch}" in proc.stderr:
            raise also._gone()
        if "couldn't find remote ref" in proc.stderr:
            if had_tip:
                raise self._gone()
            return     # an empty repository (or no status branch yet): no commits on the branch
        raise GitError(f"cannot fetch {self._branch} from {self._source}: {_last_lines(proc.stderr)}. "
                       "Check that it is a git repository this machine can reach "
                       "(path, URL, SSH keys, credentials, known_hosts)")

    def _gone(self) -> GitError:
        return GitError(f"branch {self._branch} has disappeared from {self._source}; "
                        "the controller will not take that to mean 'no tasks' or 'no status'. "
                        "Restore the branch or point --repo elsewhere")

    def push(self, clone: Path, commit: str) -> bool:
        """Push commit of clone as the new branch tip; False when someone pushed first."""
        # To a repository on this machine, compressing and delta-ing the pack only
        # burns CPU (a 100k-file status tree is 4 MB, the push's main cost): send it
        # as it is; the receiving repository's own gc compresses it later.
        fast = ("-c", "pack.compression=0", "-c", "pack.window=0") if self._local else ()
        proc = self.git(clone, *fast, "push", *(("--no-thin",) if fast else ()),
                        "--porcelain", "origin", f"{commit}:refs/heads/{self._branch}")
        if proc.returncode == 0:
            return True
        rejected = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
        detail = _last_lines("\n".join(rejected) + "\n" + proc.stderr)
        if rejected and all(_is_race(ln) for ln in rejected):
            self.last_rejection = detail
            return False
        raise GitError(f"cannot push status commit to {self._branch} of {self._source}: {detail}. "
                       "Check write access to the fleet repository and its server-side hooks")

    def swap(self, source_dir: Path, commit: str, old: str) -> bool:
        """Move the branch of the source repository in source_dir from old ("" for
        none) to commit (`git update-ref NEW OLD`, the lock a push takes too);
        False when someone moved it first."""
        proc = self.git(source_dir, "update-ref", "-m", "fleet: status",
                        f"refs/heads/{self._branch}", commit, old or "0" * 40)
        if proc.returncode == 0:
            return True
        if "but expected" in proc.stderr or "cannot lock ref" in proc.stderr:
            self.last_rejection = _last_lines(proc.stderr)
            return False
        raise GitError(f"cannot update {self._branch} of {self._source}: {_last_lines(proc.stderr)}. "
                       "Check write access to the fleet repository")

    def git(self, cwd: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run git in cwd, stopped (with its ssh child) after the timeout."""
        # No terminal prompt (a controller has nobody to answer it); a new session
        # so ssh cannot open /dev/tty either; C locale so messages can be parsed.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}
        try:
            proc = subprocess.Popen(["git", "-C", str(cwd), *args], env=env,
                                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except FileNotFoundError:
            raise GitError("the git command was not found: install git") from None
        try:
            out, err = proc.communicate(stdin, timeout=self._timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # git and its ssh child
            proc.communicate()
            raise GitError(f"git {args[0]} with {self._source} took longer than "
                           f"{self._timeout:.0f}s and was stopped: check the network") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                           err.decode(errors="replace"))


def _is_race(line: str) -> bool:
    """Whether a `git push --porcelain` rejection ("!\tSRC:DST\tREASON") means
    someone moved the branch first, so fetching and re-applying will do."""
    # "[rejected] (fetch first)" / "(non-fast-forward)": git saw it before sending.
    if "[rejected]" in line:
        return True
    # The same race seen by the server between its advertisement and its update,
    # as receive-pack words it locally and over smart HTTP or SSH alike:
    # "(failed to update ref)" (details only on "remote:" lines, "cannot lock
    # ref ... is at X but expected Y"), older "(cannot lock ref ...)", or
    # "(incorrect old value provided)". A hook's "(pre-receive hook declined)" is not.
    return "[remote rejected]" in line and any(
        words in line for words in ("failed to update ref", "lock", "old value"))
