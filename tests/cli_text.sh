#!/usr/bin/env bash
# The top-level command and the text tools end to end: `vttt --help`/`-h`
# and every subcommand's --help exit 0, an unknown command 2;
# `vttt tokenizer encode` and `vttt ingest text` give the same ids;
# `vttt ingest text --val-file`.
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

# <|endoftext|>: `vttt tokenizer encode` gives the ids `vttt ingest text`
# writes (each document, trimmed, after the token); --raw the bytes as they are
"$VTTT" textgen --bytes 4000 --seed 2 --out "$T/corpus.txt" || { echo "textgen failed"; exit 1; }
"$VTTT" tokenizer train --vocab-size 300 --quiet --out "$T/tok.bpe" "$T/corpus.txt" || { echo "tokenizer failed"; exit 1; }
EOT=$(( $("$VTTT" tokenizer info "$T/tok.bpe" | sed -n 's/.*<|endoftext|> (id \([0-9]*\)).*/\1/p') ))
printf '  Once upon a time\n<|endoftext|>\n\nthe cat sat. <|endoftext|><|endoftext|> the end\n' >"$T/a.txt"
printf 'one more<|endoftext|>' >"$T/b.txt"
# shard_ids SHARD: the ids of a uint16 shard (llm.c layout: 1024-byte header), one a line
shard_ids() { od -An -tu2 -v -j1024 "$1" | tr -s ' ' '\n' | sed '/^$/d'; }
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/d" --val-fraction 0 --quiet "$T/a.txt" "$T/b.txt" \
    || fail "ingest text"
expect_status 0 "tokenizer encode" -- "$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" "$T/a.txt" "$T/b.txt"
tr ' ' '\n' <"$T/out.txt" | sed '/^$/d' >"$T/enc.txt"
shard_ids "$T/d/train_000000.bin" >"$T/shard.txt"
[ "$(grep -cx "$EOT" "$T/shard.txt")" = 4 ] || fail "the shard has $(grep -cx "$EOT" "$T/shard.txt") <|endoftext|>, want 4"
cmp -s "$T/enc.txt" "$T/shard.txt" || fail "tokenizer encode and ingest text differ: $(tr '\n' ' ' <"$T/enc.txt") vs $(tr '\n' ' ' <"$T/shard.txt")"
"$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" --text "$(cat "$T/a.txt")" | tr ' ' '\n' >"$T/enc_text.txt"
head -n "$(wc -l <"$T/enc_text.txt")" "$T/shard.txt" | cmp -s - "$T/enc_text.txt" || fail "--text differs from the file"
"$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" --raw "$T/a.txt" | tr ' ' '\n' >"$T/raw.txt"
grep -qx "$EOT" "$T/raw.txt" && fail "--raw made an <|endoftext|> token"
"$VTTT" tokenizer decode --tokenizer "$T/tok.bpe" "$T/raw.txt" | cmp -s - "$T/a.txt" || fail "--raw does not decode back"

# --val-file: its documents go to validation only, and no INPUT document
# does unless --val-fraction says so
expect_status 0 "ingest --val-file" -- "$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/v" --quiet \
    --val-file "$T/b.txt" "$T/a.txt"
"$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" "$T/a.txt" | tr ' ' '\n' >"$T/enc_a.txt"
"$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" "$T/b.txt" | tr ' ' '\n' >"$T/enc_b.txt"
shard_ids "$T/v/train_000000.bin" | cmp -s - "$T/enc_a.txt" || fail "--val-file: train is not the INPUT's ids"
shard_ids "$T/v/val_000000.bin" | cmp -s - "$T/enc_b.txt" || fail "--val-file: val is not the --val-file's ids"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))
assert m["train"]["documents"] == 3 and m["val"]["documents"] == 1, m
assert m["val"]["files"] == [sys.argv[2]], m' "$T/v/meta.json" "$T/b.txt" || fail "--val-file: meta.json"
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/v2" --quiet --val-fraction 0.5 --val-file "$T/b.txt" \
    --val-file "$T/b.txt" "$T/a.txt" || fail "ingest --val-fraction 0.5 --val-file twice"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))
assert m["train"]["documents"] == 2 and m["val"]["documents"] == 3, m' "$T/v2/meta.json" \
    || fail "--val-fraction 0.5 with --val-file: $(tr -d ' \n' <"$T/v2/meta.json")"
expect_status 2 "the same file as INPUT and --val-file" "both an INPUT and a --val-file" -- \
    "$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/v3" --val-file "$T/a.txt" "$T/a.txt"

tl_finish "all vttt command-line checks passed"
