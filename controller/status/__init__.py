"""Status <-> status/<id>.yaml: the file format and the in-memory book.

`statusfile` writes and reads the controller-owned status files; `book` is
the engine's view of status/, parsed on demand. Imports the vocabulary only.
"""
