#!/usr/bin/env bash
# `vttt lm loss-by-position` and `vttt lm score`'s windows on small models
# (random ones made by lm_cli_helper, and short `vttt train` runs whose
# checkpoints hold trainer_state.json): per-bucket mean, standard error and
# window counts against a direct computation from `lm score`'s per-token
# lines, the CSV beside the PNG, several models in one call, --log-x
# (geometric buckets, the PNG), score's default windows = the trained
# context for every layer, --whole, the warning when attention reads past
# its trained positions, and --repeat's first/second-copy figures against
# the scores of exactly those positions.
# Usage: test_lm_position.sh path/to/vttt path/to/lm_cli_helper
set -u
VTTT=${1:?usage: test_lm_position.sh path/to/vttt path/to/lm_cli_helper}
HELP=${2:?usage: test_lm_position.sh path/to/vttt path/to/lm_cli_helper}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir lm_position
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

"$VTTT" textgen --bytes 6000 --seed 3 --out "$T/corpus.txt" || { echo "textgen failed"; exit 1; }
"$VTTT" tokenizer train --vocab-size 300 --quiet --out "$T/tok.bpe" "$T/corpus.txt" || { echo "tokenizer failed"; exit 1; }
"$VTTT" tokenizer encode --tokenizer "$T/tok.bpe" "$T/corpus.txt" >"$T/ids_all.txt" || exit 1
tr ' ' '\n' <"$T/ids_all.txt" | head -n 300 | tr '\n' ' ' >"$T/ids.txt"
tr ' ' '\n' <"$T/ids_all.txt" | head -n 600 | tr '\n' ' ' >"$T/ids600.txt"
"$HELP" init "$T/mlp" mlp 300 7 && "$HELP" init "$T/att" attention 300 9 || { echo "lm_cli_helper init failed"; exit 1; }
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/shards" --val-fraction 0 --quiet "$T/corpus.txt" || exit 1
TRAIN=("$VTTT" train --data "$T/shards" --preset test --steps 2 --batch 2 --warmup 1 --eval-every 0 --quiet)
"${TRAIN[@]}" --out "$T/lin" --layer ttt_linear --seq 64 >/dev/null || { echo "train ttt_linear failed"; exit 1; }
"${TRAIN[@]}" --out "$T/attw" --layer attention --seq 128 --window 64 >/dev/null || { echo "train attention failed"; exit 1; }
lines() { grep -E '^[0-9]+ [0-9]+ ' "$1"; }

# --- buckets: mean over windows of each window's bucket mean, its SE, the count
# 300 tokens, 299 targets, in windows of 64 inputs predicting the next 64: 4 whole windows and the last of 43
"$VTTT" lm score --model "$T/mlp" --tokens "$T/ids.txt" --context 64 >"$T/c64.txt" || fail "score --context 64"
expect_status 0 "loss-by-position --png" -- "$VTTT" lm loss-by-position --model "$T/mlp" --tokens "$T/ids.txt" \
    --context 64 --buckets 4 --png "$T/b4.png"
cp "$T/out.txt" "$T/b4.txt"
grep -q '^# 5 windows of 64 tokens (the last of 43)' "$T/b4.txt" || fail "header: $(head -1 "$T/b4.txt")"
# the direct computation: per window w and bucket b, the mean of score's lines; then mean, sd/sqrt(n), n
lines "$T/c64.txt" | awk '
    { w = int(($1 - 1) / 64); p = $1 - 64 * w; b = p <= 16 ? 0 : p <= 32 ? 1 : p <= 48 ? 2 : 3; s[w, b] += $3; c[w, b]++ }
    END { for (b = 0; b < 4; b++) { n = 0; m = 0; for (w = 0; w < 5; w++) if (c[w, b]) { x[n++] = s[w, b] / c[w, b]; m += s[w, b] / c[w, b] }
              m /= n; v = 0; for (i = 0; i < n; i++) v += (x[i] - m) ^ 2
              printf "%.6f %.6f %d\n", m, sqrt(v / (n - 1) / n), n } }' >"$T/b4_ref.txt"
grep -E '^[0-9]' "$T/b4.txt" | awk '{ print $3, $4, $5 }' >"$T/b4_got.txt"
paste -d' ' "$T/b4_ref.txt" "$T/b4_got.txt" | awk '
    { for (i = 1; i <= 2; i++) { d = $i - $(i + 3); if (d * d > 1e-10) bad = 1 } if ($3 != $6) bad = 1 }
    END { exit bad || NR != 4 }' || fail "bucket mean/SE/count differ from the direct computation: $(paste -d' ' "$T/b4_ref.txt" "$T/b4_got.txt" | tr '\n' ';')"
[ "$(awk '{ print $3 }' "$T/b4_got.txt" | tr '\n' ' ')" = "5 5 5 4 " ] || fail "window counts: $(awk '{ print $3 }' "$T/b4_got.txt" | tr '\n' ' ')"
# the CSV beside the PNG: a header and the same rows
[ "$(head -c 8 "$T/b4.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "--png wrote no PNG"
[ "$(head -1 "$T/b4.csv" 2>/dev/null)" = "model,first,last,mean_nll,se,windows" ] || fail "CSV header: $(head -1 "$T/b4.csv" 2>&1)"
diff <(tail -n +2 "$T/b4.csv" | tr ',' ' ') <(grep -E '^[0-9]' "$T/b4.txt" | sed "s|^|$T/mlp |") >/dev/null \
    || fail "CSV rows differ from stdout"
"$VTTT" lm loss-by-position --model "$T/mlp" --tokens "$T/ids.txt" --context 64 --buckets 4 --csv "$T/only.csv" >/dev/null \
    && cmp -s "$T/only.csv" "$T/b4.csv" || fail "--csv without --png"

# --- several models: one block each, equal to its own call; labels in the legend and the CSV
"$VTTT" lm loss-by-position --model "$T/att" --tokens "$T/ids.txt" --context 64 --buckets 4 >"$T/att4.txt" || fail "attention alone"
expect_status 0 "two models" -- "$VTTT" lm loss-by-position --model "$T/mlp" --model "$T/att" --label "TTT-MLP" --label "attn, tiny" \
    --tokens "$T/ids.txt" --context 64 --buckets 4 --png "$T/two.png"
cp "$T/out.txt" "$T/two.txt"
[ "$(grep -c '^# first last mean_nll se windows' "$T/two.txt")" = 2 ] || fail "two models: $(grep -c '^# first' "$T/two.txt") blocks"
diff <(sed -n '/^# TTT-MLP/,/^# attn, tiny/p' "$T/two.txt" | grep -E '^[0-9]') <(grep -E '^[0-9]' "$T/b4.txt") >/dev/null \
    || fail "two models: the first block differs from the model alone"
diff <(sed -n '/^# attn, tiny/,$p' "$T/two.txt" | grep -E '^[0-9]') <(grep -E '^[0-9]' "$T/att4.txt") >/dev/null \
    || fail "two models: the second block differs from the model alone"
[ "$(cut -d, -f1 "$T/two.csv" | sort | uniq -c | awk '{ $1 = $1; print }' | tr '\n' ';')" = '4 "attn;4 TTT-MLP;1 model;' ] \
    || fail "two models CSV labels: $(cut -d, -f1 "$T/two.csv" | sort | uniq -c | tr '\n' ';')"
grep -q '^"attn, tiny",1,16,' "$T/two.csv" || fail "a label with a comma is not quoted: $(grep attn "$T/two.csv" | head -1)"
expect_status 2 "more labels than models" "--label" -- "$VTTT" lm loss-by-position --model "$T/mlp" --label a --label b --tokens "$T/ids.txt"

# --- --log-x: geometric buckets over positions 1..64, a PNG
expect_status 0 "--log-x" -- "$VTTT" lm loss-by-position --model "$T/mlp" --model "$T/att" --tokens "$T/ids.txt" --context 64 \
    --buckets 6 --log-x --png "$T/log.png"
[ "$(awk '/^# mlp|^# .*\/mlp/ { on = 1; next } /^# first/ { next } /^#/ { on = 0 } on && /^[0-9]/ { printf "%s-%s ", $1, $2 }' "$T/out.txt")" \
    = "1-1 2-3 4-7 8-15 16-31 32-64 " ] || fail "--log-x buckets: $(grep -E '^[0-9]' "$T/out.txt" | head -6 | awk '{ printf "%s-%s ", $1, $2 }')"
[ "$(head -c 8 "$T/log.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "--log-x wrote no PNG"
[ -s "$T/log.csv" ] || fail "--log-x: no CSV beside the PNG"

# --- score: the default window is the trained context, for every layer
"$VTTT" lm score --model "$T/lin" --tokens "$T/ids.txt" >"$T/lin_def.txt" 2>"$T/lin_def.err" || fail "score ttt_linear run"
"$VTTT" lm score --model "$T/lin" --tokens "$T/ids.txt" --context 64 >"$T/lin_64.txt" || fail "score --context 64"
"$VTTT" lm score --model "$T/lin" --tokens "$T/ids.txt" --whole >"$T/lin_whole.txt" || fail "score --whole"
cmp -s <(lines "$T/lin_def.txt") <(lines "$T/lin_64.txt") || fail "ttt_linear: default windows are not --context 64 (its --seq)"
grep -q '^mean_nll .*windows of 64 tokens: the trained context, the training --seq' "$T/lin_def.txt" \
    || fail "the mean line does not say the window: $(grep mean_nll "$T/lin_def.txt")"
[ "$(lines "$T/lin_whole.txt" | wc -l)" = 299 ] || fail "--whole: $(lines "$T/lin_whole.txt" | wc -l) lines, want 299"
cmp -s <(lines "$T/lin_whole.txt" | head -64) <(lines "$T/lin_64.txt" | head -64) || fail "--whole: the first window differs"
cmp -s <(lines "$T/lin_whole.txt" | sed -n '65,$p') <(lines "$T/lin_64.txt" | sed -n '65,$p') && fail "--whole: the same as windows of 64"
grep -q 'the whole input as one sequence' "$T/lin_whole.txt" || fail "--whole: the mean line"
expect_status 2 "--whole with --context" "not both" -- "$VTTT" lm score --model "$T/lin" --tokens "$T/ids.txt" --whole --context 64
# a model directory without trainer_state.json: max_position_embeddings (512 here)
"$VTTT" lm score --model "$T/mlp" --tokens "$T/ids600.txt" >"$T/mlp_def.txt" || fail "score mlp, 600 tokens"
"$VTTT" lm score --model "$T/mlp" --tokens "$T/ids600.txt" --context 512 >"$T/mlp_512.txt" || fail "score mlp --context 512"
cmp -s <(lines "$T/mlp_def.txt") <(lines "$T/mlp_512.txt") || fail "TTT-MLP without trainer_state.json: default is not max_position_embeddings"
# attention trained with --seq 128 --window 64: its windows are independent, so 64
"$VTTT" lm score --model "$T/attw" --tokens "$T/ids.txt" >"$T/attw_def.txt" || fail "score attention run"
"$VTTT" lm score --model "$T/attw" --tokens "$T/ids.txt" --context 64 >"$T/attw_64.txt" || fail "score attention --context 64"
cmp -s <(lines "$T/attw_def.txt") <(lines "$T/attw_64.txt") || fail "attention: default windows are not its training --window"

# --- the warning when attention reads past its trained positions
expect_status 0 "attention --context 128" "past position 63" -- "$VTTT" lm score --model "$T/attw" --tokens "$T/ids.txt" --context 128 --summary
grep -q "warning: .*attention model trained on 64 positions (the training --window" "$T/err.txt" || fail "warning text: $(cat "$T/err.txt")"
expect_status 0 "attention --whole" "warning" -- "$VTTT" lm score --model "$T/att" --tokens "$T/ids600.txt" --whole --summary
expect_status 0 "attention, default" -- "$VTTT" lm score --model "$T/att" --tokens "$T/ids600.txt" --summary
grep -q warning "$T/err.txt" && fail "a warning at the trained context: $(cat "$T/err.txt")"
expect_status 0 "loss-by-position, attention past its positions" "warning" -- "$VTTT" lm loss-by-position --model "$T/attw" \
    --tokens "$T/ids.txt" --context 128 --buckets 2
expect_status 0 "TTT past its context: no warning" -- "$VTTT" lm score --model "$T/lin" --tokens "$T/ids.txt" --whole --summary
grep -q warning "$T/err.txt" && fail "a warning for a TTT model: $(cat "$T/err.txt")"

# --- --repeat: first and second copy = the scores of exactly those positions
EOT=$(sed -n 's/.*"eos_token_id":[[:space:]]*\([0-9]*\).*/\1/p' "$T/lin/latest/config.json")
tr ' ' '\n' <"$T/ids_all.txt" | grep -vx "$EOT" | grep . | head -n 300 | tr '\n' ' ' >"$T/plain.txt"   # no document token
A=$(tr ' ' '\n' <"$T/plain.txt" | sed -n '1,10p' | tr '\n' ' ')
B=$(tr ' ' '\n' <"$T/plain.txt" | sed -n '20,26p' | tr '\n' ' ')
echo "$EOT $A $EOT $B" >"$T/docs.txt"
expect_status 0 "--repeat" -- "$VTTT" lm loss-by-position --repeat --model "$T/lin" --label lin --tokens "$T/docs.txt" --context 64 \
    --csv "$T/rep.csv"
cp "$T/out.txt" "$T/rep.txt"
# each piece alone, as EOT piece EOT piece: first copy at positions 1..s, second at s+2..2s+1
for d in "$A" "$B"; do
    echo "$EOT $d $EOT $d" >"$T/pair.txt"
    "$VTTT" lm score --model "$T/lin" --tokens "$T/pair.txt" --whole | lines /dev/stdin
    echo "end"
done >"$T/pairs.txt"
awk 'BEGIN { k = 0 } /^end/ { s = (n - 1) / 2; f = g = 0; for (p = 1; p <= n; p++) { if (p <= s) f += v[p]; else if (p >= s + 2) g += v[p] }
              w[k] = s; d[k++] = (f - g) / s; F += f; G += g; W += s; n = 0; next }
     { v[$1] = $3; n++ }
     END { D = (F - G) / W; ss = 0; for (i = 0; i < k; i++) ss += w[i] ^ 2 * (d[i] - D) ^ 2
           printf "lin %d %d %.6f %.6f %.6f %.6f\n", k, W, F / W, G / W, D, sqrt(k / (k - 1) * ss) / W }' "$T/pairs.txt" >"$T/rep_ref.txt"
paste -d' ' <(grep '^lin ' "$T/rep.txt") "$T/rep_ref.txt" | awk '
    { if ($1 != $8 || $2 != $9 || $3 != $10) bad = 1; for (i = 4; i <= 7; i++) { e = $i - $(i + 7); if (e * e > 1e-10) bad = 1 } }
    END { exit bad || NR != 1 }' || fail "--repeat differs from scoring the copies: $(grep '^lin ' "$T/rep.txt") vs $(cat "$T/rep_ref.txt")"
[ "$(head -1 "$T/rep.csv")" = "model,pieces,tokens,nll_first,nll_second,drop,se_drop" ] && [ "$(sed -n 2p "$T/rep.csv" | tr ',' ' ')" = "$(grep '^lin ' "$T/rep.txt")" ] \
    || fail "--repeat CSV: $(tr '\n' ';' <"$T/rep.csv")"
# a long document is cut into pieces of at most T/2-1 tokens: 300 tokens, --context 64 -> 10 pieces of 30
expect_status 0 "--repeat pieces" -- "$VTTT" lm loss-by-position --repeat --model "$T/lin" --tokens "$T/plain.txt" --context 64
grep -qE "^$T/lin 10 300 " "$T/out.txt" || fail "--repeat pieces: $(grep -v '^#' "$T/out.txt")"
expect_status 0 "--repeat --max-windows 3" -- "$VTTT" lm loss-by-position --repeat --model "$T/lin" --tokens "$T/plain.txt" --context 64 --max-windows 3
grep -qE "^$T/lin 3 90 " "$T/out.txt" || fail "--repeat --max-windows: $(grep -v '^#' "$T/out.txt")"
expect_status 2 "--repeat with --png" "--repeat" -- "$VTTT" lm loss-by-position --repeat --model "$T/lin" --tokens "$T/ids.txt" --png "$T/x.png"

tl_finish "all loss-by-position checks passed"
