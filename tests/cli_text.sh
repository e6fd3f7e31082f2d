#!/usr/bin/env bash
# The top-level command and the text tools end to end: `vttt --help`/`-h`
# and every subcommand's --help exit 0, an unknown command 2.
# Usage: cli_text.sh path/to/vttt
set -u
VTTT=${1:?usage: cli_text.sh path/to/vttt}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir cli_text

# help: the list of commands on stdout, exit 0; each command's own --help too
for h in --help -h help; do
    expect_status 0 "vttt $h" -- "$VTTT" "$h"
    grep -q '^usage: vttt <command>' "$T/out.txt" && grep -q '^  tokenizer ' "$T/out.txt" \
        || fail "vttt $h printed no command list: $(head -2 "$T/out.txt")"
done
expect_status 2 "no command" -- "$VTTT"
expect_status 2 "unknown command" "unknown command 'frobnicate'" -- "$VTTT" frobnicate
"$VTTT" --help | awk '/^  [a-z]/ { print $1 }' >"$T/commands.txt"
[ "$(wc -l <"$T/commands.txt")" -gt 10 ] || fail "the command list has $(wc -l <"$T/commands.txt") commands"
while read -r c; do
    expect_status 0 "vttt $c --help" -- timeout 60 "$VTTT" "$c" --help
    [ -s "$T/out.txt" ] || [ -s "$T/err.txt" ] || fail "vttt $c --help printed nothing"
done <"$T/commands.txt"

tl_finish "all vttt command-line checks passed"
