"""The git store: the controller's own clone of the fleet repository (pygit2).

store.py reads (sync, trees, blobs, diffs) and owns the other parts, write.py
commits status, remote.py runs the git command (fetch, push, compare-and-swap),
common.py holds the errors and tree helpers. Nothing outside this package
imports pygit2.
"""
from controller.gitstore.common import DIRS, SPEC_DIRS, GitError, StatusConflict
from controller.gitstore.store import GitStore, files_at, remote_url, unread_at
from controller.gitstore.write import PACK_AT, REPACK_EVERY

__all__ = ["DIRS", "SPEC_DIRS", "GitError", "StatusConflict", "GitStore", "files_at",
           "remote_url", "unread_at", "PACK_AT", "REPACK_EVERY"]
