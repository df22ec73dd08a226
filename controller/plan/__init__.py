"""Pure decisions, no IO: desired + observed + now -> actions.

`planner.plan` holds every decision of the task state machine, `placement`
picks hosts, `prompt` builds what an agent is told, `runspec` assembles what
one run needs. Nothing here reads a clock, a file, a socket or a process:
imports only the vocabulary (model, where RunSpec lives too), the template
language (desired.template) and each other.
"""
