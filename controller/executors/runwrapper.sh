#!/bin/sh
# fleet run wrapper: runs one attempt of one task, detached, inside its run dir.
#
# Usage: sh runwrapper.sh RUN_DIR
#
# Started by an executor (local subprocess, or over SSH on any POSIX host) as
# the leader of its own process group, so that stopping the run means signalling
# one group. Plain POSIX sh, no bashisms: it must run under dash and busybox.
# Everything it needs was written into RUN_DIR by controller/executors/rundir.py:
#   run.env        quoted FLEET_* assignments plus the host/agent env, sourced
#   agent.sh       one `exec` line: the agent argv, every word quoted
#   validation.sh  `fleet_check 'command'` lines, one per validation command
#   prompt         the prompt, fed on stdin when FLEET_PROMPT_MODE=stdin
# It writes:
#   lock/ pid output stderr wrapper.log validation.log validation.tail
#   result         key=value lines; written to result.tmp and renamed last, so
#                  its existence means the run is over
# No value is ever eval'ed: every value arrives through run.env's quoting and
# is only ever expanded inside double quotes.
#
# Exit codes: 0 the run ended and `result` says how; 75 another wrapper owns
# this run (nothing touched); 64 bad usage; 143 stopped by a signal.

[ "$#" -eq 1 ] && [ -d "$1" ] || { echo "usage: sh runwrapper.sh RUN_DIR" >&2; exit 64; }

# (a) The claim. mkdir is atomic, so of two wrappers started for one run id
# exactly one goes on; the other leaves before touching anything.
mkdir "$1/lock" 2>/dev/null || exit 75

# (b) We are the process group leader: our pid is the group id to signal.
# Written first, so that even a wrapper that dies on the next line is seen as
# gone (LOST) rather than as forever starting.
echo "$$" >"$1/pid.tmp" && mv -f "$1/pid.tmp" "$1/pid"

# Source run.env before setting any variable of our own, so that nothing in a
# host's or agent's env can overwrite the wrapper's state.
. "$(cd "$1" && pwd -P)/run.env" || exit 66
RUN_DIR=$(cd "$1" && pwd -P) || exit 66
LOG=$RUN_DIR/wrapper.log
WS=$FLEET_WORKSPACE
GIT_TERMINAL_PROMPT=0    # a git asking for a password on a detached run would hang it
export GIT_TERMINAL_PROMPT

step=start
step_failed=
error=
agent_exit=
validation_failed=
validation_exit=
validation_output=
vfailed=0
base=
head=
pushed=0
changes=0

log() {
    printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOG"
}

# A value fit for one key=value line of `result`.
oneline() {
    printf '%s' "$*" | tr '\r\n\t' '   ' | cut -c 1-500
}

# The last non-blank line of a file: the line of an error message that says why.
last_line() {
    [ -f "$1" ] && grep -v '^[[:space:]]*$' "$1" | tail -n 1
}

# Run git, its stdout and stderr into the log, its stderr also kept for errors.
# No hooks: one an agent planted in .git/hooks must not run in fleet's steps.
g() {
    git -c core.hooksPath=/dev/null "$@" >>"$LOG" 2>"$RUN_DIR/git.err"
    g_rc=$?
    cat "$RUN_DIR/git.err" >>"$LOG"
    return "$g_rc"
}

# (h) The result, written atomically: readers never see half of it.
write_result() {
    trap '' TERM INT    # a late signal must not leave a half-written result
    {
        printf 'step_failed=%s\n' "$step_failed"
        printf 'error=%s\n' "$(oneline "$error")"
        printf 'agent_exit=%s\n' "$agent_exit"
        printf 'validation_failed=%s\n' "$(oneline "$validation_failed")"
        printf 'validation_exit=%s\n' "$validation_exit"
        printf 'validation_output=%s\n' "$(oneline "$validation_output")"
        printf 'base=%s\n' "$base"
        printf 'head=%s\n' "$head"
        printf 'pushed=%s\n' "$pushed"
        printf 'changes=%s\n' "$changes"
    } >"$RUN_DIR/result.tmp" && mv -f "$RUN_DIR/result.tmp" "$RUN_DIR/result"
}

finish() {
    log "finished: ${step_failed:-ok}${error:+: $error}"
    write_result
    exit "${1:-0}"
}

fail() {
    step_failed=$1
    error=$2
    finish 0
}

# The executor stops a run by signalling its whole group: the agent dies with
# it, and we record why before leaving. dash runs this once the foreground
# child has exited.
on_signal() {
    step_failed=cancelled
    error="stopped by a signal during $step"
    finish 143
}
trap on_signal TERM INT

log "run $FLEET_RUN_ID of task $FLEET_TASK_ID (attempt $FLEET_ATTEMPT), pid $$"

# (c) The workspace: a clone of the target repo, reset to where this attempt
# starts, so nothing from a previous attempt survives.
prepare_workspace() {
    if [ -d "$WS/.git" ]; then
        step=fetch
        log "fetch $FLEET_REPO in $WS"
        if g -C "$WS" config -- remote.origin.url "$FLEET_REPO" &&
            g -C "$WS" fetch --prune --force origin; then
            return 0
        fi
        # A half-made or broken workspace would fail every later attempt too.
        log "fetch failed: $(last_line "$RUN_DIR/git.err"); cloning afresh"
        rm -rf "$WS"
    fi
    step=clone
    log "clone $FLEET_REPO into $WS"
    [ -n "$WS" ] && rm -rf "$WS" && mkdir -p "$WS" || fail clone "cannot create workspace $WS"
    # --no-local: a plain-path clone copies object files and can catch a
    # concurrent push half-way; the git protocol cannot.
    g clone --quiet --no-local --no-checkout -- "$FLEET_REPO" "$WS" ||
        fail clone "git clone: $(last_line "$RUN_DIR/git.err")"
}

checkout_start() {
    step=checkout
    start=refs/remotes/origin/$FLEET_BASE
    if [ "$FLEET_FROM_BRANCH" = 1 ] &&
        git -C "$WS" rev-parse -q --verify "refs/remotes/origin/$FLEET_BRANCH^{commit}" \
            >/dev/null 2>&1; then
        start=refs/remotes/origin/$FLEET_BRANCH
    fi
    log "checkout $FLEET_BRANCH from $start"
    g -C "$WS" checkout -q -f -B "$FLEET_BRANCH" "$start" &&
        g -C "$WS" reset -q --hard "$start" &&
        g -C "$WS" clean -q -ffdx ||
        fail checkout "git checkout $FLEET_BRANCH from $start: $(last_line "$RUN_DIR/git.err")"
    base=$(git -C "$WS" rev-parse HEAD) || fail checkout "no commit at $start"
    head=$base
}

# (d) The agent, in the workspace, prompt on stdin (or /dev/null when the
# profile reads it from {prompt_file}).
run_agent() {
    step=agent
    stdin=$RUN_DIR/prompt
    [ "$FLEET_PROMPT_MODE" = file ] && stdin=/dev/null
    log "agent: start"
    (cd "$WS" && exec sh "$RUN_DIR/agent.sh") <"$stdin" >"$RUN_DIR/output" 2>"$RUN_DIR/stderr"
    agent_exit=$?
    log "agent: exit $agent_exit"
}

# (f) Whatever the agent left uncommitted becomes one commit by fleet.
commit_changes() {
    step=commit
    g -C "$WS" add -A || fail commit "git add: $(last_line "$RUN_DIR/git.err")"
    if ! git -C "$WS" diff --cached --quiet; then
        log "commit the agent's uncommitted changes"
        g -C "$WS" -c user.name=fleet -c user.email=fleet@localhost -c commit.gpgsign=false \
            commit -q --no-verify -m "fleet: task $FLEET_TASK_ID, run $FLEET_RUN_ID" ||
            fail commit "git commit: $(last_line "$RUN_DIR/git.err")"
    fi
    head=$(git -C "$WS" rev-parse HEAD) || fail commit "no HEAD after commit"
    [ "$head" != "$base" ] && changes=1
}

# (e) Validation: called once per command by validation.sh; after the first
# failure the rest are skipped. Runs on the committed tree, so files that tests
# create (caches, build output) never end up in the agent's commit.
fleet_check() {
    [ "$vfailed" = 1 ] && return 0
    step=validation
    log "validation: $1"
    printf '$ %s\n' "$1" >>"$RUN_DIR/validation.log"
    (cd "$WS" && exec sh -c "$1") </dev/null >"$RUN_DIR/validation.out" 2>&1
    v_rc=$?
    cat "$RUN_DIR/validation.out" >>"$RUN_DIR/validation.log"
    [ "$v_rc" -eq 0 ] && return 0
    vfailed=1
    validation_failed=$1
    validation_exit=$v_rc
    tail -n 40 "$RUN_DIR/validation.out" >"$RUN_DIR/validation.tail"
    validation_output=$(last_line "$RUN_DIR/validation.out")
    log "validation failed (exit $v_rc): $1"
}

# (g) The branch belongs to fleet: force it to what this attempt produced.
push_branch() {
    step=push
    log "push HEAD to $FLEET_BRANCH"
    g -C "$WS" push -q --force --no-verify origin "HEAD:refs/heads/$FLEET_BRANCH" ||
        fail push "git push: $(last_line "$RUN_DIR/git.err")"
    pushed=1
}

prepare_workspace
checkout_start
run_agent
[ "$agent_exit" -eq 0 ] || fail agent "agent exited $agent_exit"
commit_changes
if [ -s "$RUN_DIR/validation.sh" ]; then
    . "$RUN_DIR/validation.sh"
    [ "$vfailed" = 1 ] &&
        fail validation "validation failed (exit $validation_exit): $validation_failed"
fi
if [ "$changes" = 1 ]; then
    push_branch
else
    log "no changes beyond $base: nothing to push"
fi
finish 0
