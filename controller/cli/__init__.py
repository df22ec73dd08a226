"""People's commands: argument parsing, output tables, init, validate, the demo.

The top layer: it may import every other package, and nothing imports it.
`main.py` parses arguments and hands over; `output.py` prints `fleet status`
and `fleet plan`; `init.py` seeds a new fleet repository; `validate.py` checks
one; `workspace.py` finds the clone a command runs in; `demo.py` is the tour.
"""
