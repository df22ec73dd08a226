"""Pure decisions, no IO: desired + observed + now -> actions.

`planner.plan` holds every decision of the task state machine, `placement`
picks hosts, `prompt` builds what an agent is told, `runspec` assembles what
one run needs. Nothing here reads a clock, a file, a socket or a process:
imports only the vocabulary (model), the template language (desired.template),
the executors' RunSpec type (executors.base) and each other.
"""
