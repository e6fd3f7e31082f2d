# shellcheck shell=bash
# Shared by the end-to-end shell tests; sourced, not run:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Gives a temporary directory, a failure count with fail and expect_status,
# and the closing summary.

FAILS=0

# tl_tmpdir NAME: T, a fresh directory $TMPDIR/vttt_NAME_XXXXXX (/tmp without
# TMPDIR), removed when the script exits.
tl_tmpdir() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/vttt_$1_XXXXXX") || { echo "cannot make a temporary directory"; exit 1; }
    trap 'rm -rf "$T"' EXIT
}

# fail MESSAGE: prints the failure and counts it; the script goes on.
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# expect_status WANT DESCRIPTION [GREP] -- command...: the command's exit
# status is WANT, and GREP (when given) is in its stderr. Its stdout and
# stderr are left in $T/out.txt and $T/err.txt.
expect_status() {
    local want=$1 what=$2 pat=""
    shift 2
    if [ "$1" != -- ]; then pat=$1; shift; fi
    shift
    "$@" >"$T/out.txt" 2>"$T/err.txt"
    local got=$?
    [ "$got" = "$want" ] || { fail "$what: exit $got, want $want"; sed 's/^/    /' "$T/err.txt" | head -5; }
    [ -z "$pat" ] || grep -q -- "$pat" "$T/err.txt" || { fail "$what: no '$pat' in stderr:"; sed 's/^/    /' "$T/err.txt" | head -5; }
}

# tl_wait_for FILE SECONDS: returns 0 once FILE exists, 1 after SECONDS.
tl_wait_for() {
    local i=0
    while [ ! -e "$1" ] && [ $i -lt $(($2 * 100)) ]; do sleep 0.01; i=$((i + 1)); done
    [ -e "$1" ]
}

# Runs killed part way (the trainers' resume tests).
# tl_bg ERRFILE command...: starts the command in the background with its
# stderr in ERRFILE; BG_PID is its pid. After tl_tmpdir: from then on the
# exit trap also kills every such run still alive.
TL_BG_PIDS=()
tl_bg() {
    local err=$1
    shift
    "$@" 2>"$err" &
    BG_PID=$!
    TL_BG_PIDS+=("$BG_PID")
    trap 'for p in "${TL_BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
}

# tl_sigkill_at FILE [DELAY]: once FILE appears (60 s at most), SIGKILLs
# the run BG_PID (DELAY seconds later when given), reaps it, and fails
# unless it died of the signal, i.e. part way.
tl_sigkill_at() {
    tl_wait_for "$1" 60 || fail "no $1 appeared"
    [ -z "${2:-}" ] || sleep "$2"
    kill -9 "$BG_PID" 2>/dev/null
    wait "$BG_PID"
    local rc=$?
    [ "$rc" = 137 ] || fail "the run was not killed part way (exit $rc); make it longer"
}

# tl_sigterm_after METRICS N ERRFILE: once METRICS holds N lines with
# "loss" (60 s at most), SIGTERMs the run BG_PID and fails unless it exits
# 0 having written "stopped by a signal" to ERRFILE.
tl_sigterm_after() {
    local i=0 k rc
    while k=$(grep -c '"loss"' "$1" 2>/dev/null); [ "${k:-0}" -lt "$2" ] && [ $i -lt 6000 ]; do
        sleep 0.01
        i=$((i + 1))
    done
    kill -TERM "$BG_PID"
    wait "$BG_PID"
    rc=$?
    [ "$rc" = 0 ] || { fail "SIGTERM: exit $rc, want 0"; cat "$3"; }
    grep -q "stopped by a signal" "$3" || fail "SIGTERM: no message: $(cat "$3")"
}

# tl_finish MESSAGE: exits 1 with the number of failed checks, or prints
# MESSAGE and exits 0.
tl_finish() {
    if [ "$FAILS" -gt 0 ]; then
        echo "$FAILS check(s) failed"
        exit 1
    fi
    echo "$1"
    exit 0
}
