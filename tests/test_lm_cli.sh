#!/usr/bin/env bash
# `vttt lm` end to end on small random models (made by lm_cli_helper):
# score's per-token NLL equals the NLL of the decode path's logits (TTT-MLP,
# TTT-Linear on the Mamba backbone, attention), the mean and perplexity
# lines, --context windows, token shards and --text equal to the ids they
# encode, loss-by-position equal to the per-window scores, sample's seed
# determinism, top-k 1 = temperature 0 = greedy by full forwards, constant
# TTT state size, and the errors: usage (2), bad ids, missing or malformed
# files (1, with a message). Usage: test_lm_cli.sh path/to/vttt path/to/lm_cli_helper
set -u
VTTT=${1:?usage: test_lm_cli.sh path/to/vttt path/to/lm_cli_helper}
HELP=${2:?usage: test_lm_cli.sh path/to/vttt path/to/lm_cli_helper}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir lm_cli
# same_nll A B TOL: two `<position> <id> <nll>` listings agree (positions, ids, nll within TOL)
same_nll() {
    grep -E '^[0-9]+ ' "$1" >"$T/same_a.txt"   # (the arguments may be pipes, read once)
    grep -E '^[0-9]+ ' "$2" >"$T/same_b.txt"
    local a b
    a=$(wc -l <"$T/same_a.txt") b=$(wc -l <"$T/same_b.txt")
    [ "$a" = "$b" ] && [ "$a" -gt 0 ] || { echo "line counts $a and $b"; return 1; }
    paste -d' ' "$T/same_a.txt" "$T/same_b.txt" | awk -v tol="$3" '
        { d = $3 - $6; if (d < 0) d = -d; if ($1 != $4 || $2 != $5 || d > tol) { print "line " NR ": " $0; bad = 1; exit } }
        END { exit bad }'
}

"$VTTT" textgen --bytes 6000 --seed 3 --out "$T/corpus.txt" || { echo "textgen failed"; exit 1; }
"$VTTT" tokenizer train --vocab-size 300 --quiet --out "$T/tok.bpe" "$T/corpus.txt" || { echo "tokenizer failed"; exit 1; }
"$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" "$T/corpus.txt" >"$T/ids_all.txt" || exit 1
tr ' ' '\n' <"$T/ids_all.txt" | head -n 300 | tr '\n' ' ' >"$T/ids.txt"
"$HELP" init "$T/mlp" mlp 300 7 && "$HELP" init "$T/lin" linear 300 8 mamba && "$HELP" init "$T/att" attention 300 9 \
    || { echo "lm_cli_helper init failed"; exit 1; }

# usage errors: 2
expect_status 2 "no subcommand" -- "$VTTT" lm
expect_status 0 "--help" -- "$VTTT" lm --help
expect_status 2 "unknown subcommand" -- "$VTTT" lm frobnicate
expect_status 2 "score without --model" "--model" -- "$VTTT" lm score --tokens "$T/ids.txt"
expect_status 2 "score without input" "exactly one of" -- "$VTTT" lm score --model "$T/mlp"
expect_status 2 "score with two inputs" "exactly one of" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/ids.txt" --text "$T/corpus.txt"
expect_status 2 "--text without --tokenizer" "needs --tokenizer" -- "$VTTT" lm score --model "$T/mlp" --text "$T/corpus.txt"
expect_status 2 "bad --context" "--context" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/ids.txt" --context ten
expect_status 2 "bad --buckets" "--buckets" -- "$VTTT" lm loss-by-position --model "$T/mlp" --tokens "$T/ids.txt" --buckets 0
expect_status 2 "sample without --tokenizer" "--tokenizer" -- "$VTTT" lm sample --model "$T/mlp"
expect_status 2 "bad --temperature" "--temperature" -- "$VTTT" lm sample --model "$T/mlp" --tokenizer "$T/tok.bpe" --temperature -1
expect_status 2 "unknown option" -- "$VTTT" lm sample --model "$T/mlp" --tokenizer "$T/tok.bpe" --frobnicate

# score: every line is the NLL of the decode path's logits; mean and perplexity
for m in mlp lin att; do
    "$HELP" nll "$T/$m" "$T/ids.txt" >"$T/ref_$m.txt" || fail "$m: helper nll"
    expect_status 0 "$m: score" -- "$VTTT" lm score --model "$T/$m" --tokens "$T/ids.txt"
    cp "$T/out.txt" "$T/score_$m.txt"
    same_nll "$T/ref_$m.txt" "$T/score_$m.txt" 2e-3 || fail "$m: score differs from the decode-path NLL"
    awk '/^[0-9]/ { s += $3; n++ } /^mean_nll/ { m = $2; c = $3 } /^perplexity/ { p = $2 }
         END { d = s / n - m; e = exp(m) / p - 1; exit !(n == 299 && c == "(299" && d * d < 1e-10 && e * e < 1e-8) }' \
        "$T/score_$m.txt" || fail "$m: mean_nll/perplexity lines: $(tail -2 "$T/score_$m.txt" | tr '\n' ' ')"
done
# attention's default window is max_position_embeddings (512 here): 599 tokens predicted as 512 + 87,
# position 513 from a fresh window
tr ' ' '\n' <"$T/ids_all.txt" | head -n 600 | tr '\n' ' ' >"$T/ids600.txt"
"$VTTT" lm score --model "$T/att" --tokens "$T/ids600.txt" >"$T/att600.txt" || fail "attention, 600 tokens"
tr ' ' '\n' <"$T/ids600.txt" | sed -n '513,600p' | tr '\n' ' ' >"$T/ids_tail.txt"
"$VTTT" lm score --model "$T/att" --tokens "$T/ids_tail.txt" | awk '/^[0-9]/ { $1 += 512; print }' >"$T/att_tail.txt"
[ "$(grep -c '^[0-9]' "$T/att600.txt")" = 599 ] && same_nll "$T/att_tail.txt" <(sed -n '513,599p' "$T/att600.txt") 1e-5 \
    || fail "attention: not windows of max_position_embeddings"
expect_status 0 "score --summary" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/ids.txt" --summary
[ "$(cat "$T/out.txt")" = "$(tail -2 "$T/score_mlp.txt")" ] || fail "--summary: $(cat "$T/out.txt")"

# --context 128: windows of 128 inputs from the initial state, each
# predicting the 128 tokens after its first (as the trainer's validation):
# every token but the first is scored once; the first window is the
# whole-input score's beginning, the next ones start again
"$VTTT" lm score --model "$T/mlp" --tokens "$T/ids.txt" --context 128 --batch 2 >"$T/ctx.txt" || fail "score --context"
[ "$(grep -c '^[0-9]' "$T/ctx.txt")" = 299 ] || fail "--context 128: $(grep -c '^[0-9]' "$T/ctx.txt") lines, want 299"
[ "$(awk '/^[0-9]/ { print $1 }' "$T/ctx.txt" | tr '\n' ' ')" = "$(seq 1 299 | tr '\n' ' ')" ] \
    || fail "--context 128: not every position 1..299 once"
same_nll <(head -n 128 "$T/score_mlp.txt") <(head -n 128 "$T/ctx.txt") 1e-5 || fail "--context: first window differs"
tr ' ' '\n' <"$T/ids.txt" | sed -n '129,257p' | tr '\n' ' ' >"$T/ids_w1.txt"
"$VTTT" lm score --model "$T/mlp" --tokens "$T/ids_w1.txt" | awk '/^[0-9]/ { $1 += 128; print }' >"$T/w1.txt"
same_nll "$T/w1.txt" <(sed -n '129,256p' "$T/ctx.txt") 1e-5 || fail "--context: second window differs from scoring it alone"

# a token shard and --text give the same scores as the ids they hold
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/shards" --val-fraction 0 --quiet "$T/corpus.txt" || fail "ingest text"
"$VTTT" tokenizer decode --tokenizer "$T/tok.bpe" "$T/shards/train_000000.bin" >/dev/null || fail "shard decode"
"$VTTT" lm score --model "$T/lin" --tokens "$T/shards/train_000000.bin" --context 256 >"$T/shard.txt" || fail "score a shard"
"$VTTT" lm score --model "$T/lin" --text "$T/corpus.txt" --tokenizer "$T/tok.bpe" --context 256 >"$T/text.txt" || fail "score --text"
cmp -s "$T/shard.txt" "$T/text.txt" || fail "shard and --text scores differ"
[ "$(grep -c '^[0-9]' "$T/shard.txt")" -gt 1000 ] || fail "shard: only $(grep -c '^[0-9]' "$T/shard.txt") lines"

# loss-by-position: with one position per bucket, bucket p is the mean over
# the windows of score --context's line for p
"$VTTT" lm score --model "$T/mlp" --tokens "$T/ids.txt" --context 64 >"$T/c64.txt" || fail "score --context 64"
expect_status 0 "loss-by-position" -- "$VTTT" lm loss-by-position --model "$T/mlp" --tokens "$T/ids.txt" --context 64 \
    --buckets 64 --batch 3 --png "$T/lbp.png"
cp "$T/out.txt" "$T/lbp.txt"
[ "$(grep -c '^[0-9]' "$T/lbp.txt")" = 64 ] || fail "loss-by-position: $(grep -c '^[0-9]' "$T/lbp.txt") buckets, want 64"
# (299 targets: 4 windows of 64 and the last of 43: positions up to 43 in 5 windows)
awk 'NR == FNR { if ($1 ~ /^[0-9]+$/ && NF == 3) { p = ($1 - 1) % 64 + 1; s[p] += $3; n[p]++ } next }
     /^[0-9]/ { d = $3 - s[$1] / n[$1]; if ($1 != $2 || n[$1] != ($1 <= 43 ? 5 : 4) || $5 != n[$1] || d * d > 1e-8) {
                    print "bucket " $0; bad = 1 } }
     END { exit bad }' "$T/c64.txt" "$T/lbp.txt" || fail "loss-by-position differs from the per-window scores"
[ "$(head -c 8 "$T/lbp.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "--png wrote no PNG"
"$VTTT" lm loss-by-position --model "$T/mlp" --tokens "$T/ids.txt" --context 64 --buckets 4 --max-windows 2 >"$T/lbp4.txt" \
    || fail "loss-by-position --buckets 4"
grep -q '^# 2 windows of 64 tokens;' "$T/lbp4.txt" || fail "--max-windows/--buckets header: $(head -1 "$T/lbp4.txt")"
[ "$(grep '^[0-9]' "$T/lbp4.txt" | awk '{ printf "%s-%s ", $1, $2 }')" = "1-16 17-32 33-48 49-64 " ] \
    || fail "bucket edges: $(grep '^[0-9]' "$T/lbp4.txt" | awk '{ printf "%s-%s ", $1, $2 }')"
expect_status 1 "context longer than the input" "set --context" -- "$VTTT" lm loss-by-position --model "$T/mlp" --tokens "$T/ids.txt" --context 1000

# sample: a seed gives the same text; top-k 1 = temperature 0 = greedy by full forwards
S=("$VTTT" lm sample --model "$T/mlp" --tokenizer "$T/tok.bpe" --prompt "Once upon a time" --max-tokens 40 --ignore-eot)
"${S[@]}" --seed 5 --top-k 20 >"$T/s1.txt" || fail "sample"
"${S[@]}" --seed 5 --top-k 20 >"$T/s2.txt" || fail "sample again"
"${S[@]}" --seed 6 --top-k 20 >"$T/s3.txt" || fail "sample seed 6"
cmp -s "$T/s1.txt" "$T/s2.txt" || fail "the same seed gave two texts"
cmp -s "$T/s1.txt" "$T/s3.txt" && fail "seeds 5 and 6 gave the same text"
head -c 16 "$T/s1.txt" | grep -q '^Once upon a time' || fail "sample does not start with the prompt"
"${S[@]}" --ids --top-k 1 --seed 9 >"$T/g1.txt" || fail "top-k 1"
"${S[@]}" --ids --temperature 0 >"$T/g2.txt" || fail "temperature 0"
cmp -s "$T/g1.txt" "$T/g2.txt" || fail "top-k 1 differs from temperature 0"
EOT=$(( $("$VTTT" tokenizer info "$T/tok.bpe" | sed -n 's/.*<|endoftext|> (id \([0-9]*\)).*/\1/p') ))
PROMPT=$("$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" --raw --text "Once upon a time")
"$HELP" greedy "$T/mlp" 40 $EOT $PROMPT >"$T/g3.txt" || fail "helper greedy"
cmp -s "$T/g2.txt" "$T/g3.txt" || fail "greedy decode differs from greedy full forwards: $(cat "$T/g2.txt") vs $(cat "$T/g3.txt")"
[ "$(wc -w <"$T/g2.txt")" = 40 ] || fail "--max-tokens 40 gave $(wc -w <"$T/g2.txt") ids"
"$VTTT" lm sample --model "$T/lin" --tokenizer "$T/tok.bpe" --max-tokens 100 --ignore-eot --verbose >/dev/null 2>"$T/v.txt" \
    || fail "sample --verbose"
A=$(sed -n 's/^state: \([0-9]*\) bytes at position 0$/\1/p' "$T/v.txt")
Z=$(sed -n 's/^state: \([0-9]*\) bytes at position 100$/\1/p' "$T/v.txt")
[ -n "$A" ] && [ "$A" = "$Z" ] || fail "TTT state size not constant: $(tr '\n' ' ' <"$T/v.txt")"
expect_status 0 "--max-tokens 0" -- "$VTTT" lm sample --model "$T/att" --tokenizer "$T/tok.bpe" --prompt "Hi" --max-tokens 0
[ "$(cat "$T/out.txt")" = "Hi" ] || fail "--max-tokens 0 printed '$(cat "$T/out.txt")'"

# bad inputs: 1 with a message
echo "1 2 300 4" >"$T/big.txt"
expect_status 1 "id >= vocab" "token 2 is id 300, outside the model's vocabulary 0..299" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/big.txt"
echo "1 2 x 4" >"$T/junk.txt"
expect_status 1 "not an id" "byte 4: expected a token id" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/junk.txt"
echo "5" >"$T/one.txt"
expect_status 1 "one token" "at least 2" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/one.txt"
expect_status 1 "missing tokens file" "$T/nope.txt" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/nope.txt"
expect_status 1 "missing model dir" "$T/nomodel" -- "$VTTT" lm score --model "$T/nomodel" --tokens "$T/ids.txt"
mkdir -p "$T/bad1" "$T/bad2" "$T/bad3"
echo '{"vocab_size": ' >"$T/bad1/config.json"
cp "$T/mlp/model.safetensors" "$T/bad1/"
expect_status 1 "malformed config.json" "config.json" -- "$VTTT" lm score --model "$T/bad1" --tokens "$T/ids.txt"
cp "$T/mlp/config.json" "$T/bad2/"
expect_status 1 "no model.safetensors" "model.safetensors" -- "$VTTT" lm sample --model "$T/bad2" --tokenizer "$T/tok.bpe"
cp "$T/mlp/config.json" "$T/bad3/"
head -c 5000 "$T/mlp/model.safetensors" >"$T/bad3/model.safetensors"
expect_status 1 "truncated model.safetensors" "model.safetensors" -- "$VTTT" lm loss-by-position --model "$T/bad3" --tokens "$T/ids.txt"
head -c 2000 "$T/shards/train_000000.bin" >"$T/trunc.bin"
expect_status 1 "truncated shard" "trunc.bin" -- "$VTTT" lm score --model "$T/mlp" --tokens "$T/trunc.bin"
"$VTTT" tokenizer train --vocab-size 400 --min-count 1 --quiet --out "$T/tok400.bpe" "$T/corpus.txt" || fail "tokenizer 400"
expect_status 1 "tokenizer larger than the model" "not the model's tokenizer" -- "$VTTT" lm sample --model "$T/mlp" --tokenizer "$T/tok400.bpe"
expect_status 1 "--text, tokenizer larger than the model" "not the model's tokenizer" -- "$VTTT" lm score --model "$T/mlp" --text "$T/corpus.txt" --tokenizer "$T/tok400.bpe"
expect_status 1 "missing tokenizer" "nope.bpe" -- "$VTTT" lm sample --model "$T/mlp" --tokenizer "$T/nope.bpe"
# a finite weight so large that the losses overflow: an error, not "mean_nll -nan"
"$HELP" poison "$T/mlp" "$T/poisoned" 3e38 || fail "helper poison"
expect_status 1 "score with a 3e38 weight" "not finite" -- "$VTTT" lm score --model "$T/poisoned" --tokens "$T/ids.txt"
grep -q "mean_nll" "$T/out.txt" && fail "score printed a mean over non-finite losses: $(tail -2 "$T/out.txt")"
expect_status 1 "loss-by-position with a 3e38 weight" "not finite" -- "$VTTT" lm loss-by-position --model "$T/poisoned" --tokens "$T/ids.txt" --context 100

tl_finish "all vttt lm checks passed"
