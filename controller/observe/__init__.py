"""The world -> Observed: facts for the planner, no decisions.

`observer.Observer` assembles one pass's Observed from the parts: `polling`
reads runs on every host side by side within a budget, `health` checks hosts
and keeps the down/lost/abandoned records, `merges` looks whether a task's
pushed work reached its base branch, `known` remembers the hosts and last
valid specs of tasks in flight. May import executors (to ask hosts), status/
and the vocabulary, but never plan/, engine/ or cli/.
"""
