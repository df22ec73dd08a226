"""The world -> Observed: facts for the planner, no decisions.

`polling` reads runs on every host side by side within a budget, `health`
checks hosts and keeps the lost/abandoned records, `merges` looks whether a
task's pushed work reached its base branch. May import executors (to ask
hosts) but never plan/, engine/ or cli/.
"""
