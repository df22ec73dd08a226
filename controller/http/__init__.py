"""The HTTP app: the only package that imports bottle (and waitress).

Empty for now: webhooks, the pull API, /healthz and /metrics come with the
next issues. Hands every request that touches tasks to the engine's loop.
"""
