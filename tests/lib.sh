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
