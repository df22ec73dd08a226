"""What one run needs, assembled from the desired state: the engine's RunSpec builder.

Pure: the engine hands in the task (its current or last valid spec), the agent
profile, the host, the planner's StartRun and the task's previous status; out
comes the RunSpec an executor starts, with the structured prompt built here.
"""
from __future__ import annotations

from controller.model import Agent, Host, RunSpec, StartRun, Status, Task
from controller.plan.prompt import build_prompt


def make_spec(task: Task, agent: Agent, host: Host, action: StartRun,
              previous: Status | None, template: str | None) -> RunSpec:
    revision_of = previous.result if previous is not None and action.from_branch else None
    prompt = build_prompt(
        task, repo=task.repo, branch=task.branch, base=task.base, attempt=action.attempt,
        feedback=action.feedback, previous_result=revision_of,
        previous_failure=action.previous_failure, template=template)
    return RunSpec(run_id=action.run_id, task_id=task.id, host=host, command=agent.command,
                   prompt=prompt, prompt_mode=agent.prompt, output_format=agent.output,
                   repo=task.repo, base=task.base, branch=task.branch,
                   from_branch=action.from_branch, validation=task.validation,
                   attempt=action.attempt,
                   env=tuple(host.env) + tuple(agent.env),   # the agent's wins: rundir writes it last
                   pass_env=tuple(dict.fromkeys(host.pass_env + agent.pass_env)))
