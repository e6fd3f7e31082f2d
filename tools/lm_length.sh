#!/usr/bin/env bash
# Length generalization of TTT language models on real text (the figures
# of docs/lm_length.md): the King James Bible from Debian's bible-kjv
# (66 books, each a document), 5 books held out whole, BPE 4096, the tiny
# preset; for ttt_linear and ttt_mlp two models each:
#   fresh  trained on 256-token sequences (every one from the initial state);
#   docs   trained with --docs --seq 4096 --window 256: every sequence is a
#          book (a piece of 4096 tokens of one) from its start, the TTT
#          state carried window to window (16 windows of 256);
#   P+docs, P+60  the model P (fresh, docs, fresh+docs) trained on (--init)
#          with --docs as above, 60 steps of one 4096-token piece at lr 1e-3
#          (fresh+docs: the fresh model fine-tuned; docs+60: the docs model
#          trained 60 steps longer);
# then tools/lm_length_eval.sh scores the held-out books with the state
# carried over 16 training windows (4096 tokens) and over the whole book,
# against fresh 256-token windows, by position.
#
# Usage: bash tools/lm_length.sh [OUT_DIR (lm_length)]
# Environment: VTTT (default build/vttt), LAYERS ("ttt_linear ttt_mlp"),
# KINDS (default: "fresh docs fresh+docs docs+60", and fresh+docs+60 for
# ttt_mlp, the runs of the page), THREADS (1). fresh and docs see the
# same training tokens (512000, fewer for docs by the padding after each
# book's end). Steps already done are reused (delete OUT_DIR to redo).
# Needs apt-get (bible-kjv, bible-kjv-text: fetched with `apt-get
# download`, not installed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-lm_length}
LAYERS=${LAYERS:-ttt_linear ttt_mlp}
THREADS=${THREADS:-1}
W=256 K=16
HELD="06_Joshua 21_Ecclesiastes 27_Daniel 41_Mark 45_Romans"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=$THREADS
[ -x "$VTTT" ] || { echo "no $VTTT: build first, or set VTTT=path/to/vttt" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"

# the text: one file per book, as the `bible` program prints it
if [ ! -s books/66_Revelation.txt ]; then
    apt-get download bible-kjv bible-kjv-text >/dev/null
    for d in bible-kjv_*.deb bible-kjv-text_*.deb; do dpkg-deb -x "$d" pkg; done
    pkg/usr/bin/bible -p pkg/usr/lib "Gen1:1-Rev22:21" >all.txt
    mkdir -p books
    awk '/^[1-3]? ?[A-Z][A-Za-z ]+ 1$/ { n++; b = $0; sub(/ 1$/, "", b); gsub(/ /, "_", b)
                                        f = sprintf("books/%02d_%s.txt", n, b) }
         n > 0 { print > f }' all.txt
fi
[ "$(ls books | wc -l)" = 66 ] || { echo "lm_length: expected 66 books in $OUT/books" >&2; exit 1; }
mkdir -p train held
for f in books/*.txt; do
    b=$(basename "$f" .txt)
    case " $HELD " in *" $b "*) cp "$f" held/ ;; *) cp "$f" train/ ;; esac
done
[ -s tok.bpe ] || "$VTTT" tokenizer train --vocab-size 4096 --out tok.bpe --quiet train/*.txt
[ -s data/meta.json ] || "$VTTT" ingest text --tokenizer tok.bpe --out data --val-fraction 0 --quiet train/*.txt
[ -s heldout/meta.json ] || "$VTTT" ingest text --tokenizer tok.bpe --out heldout --val-fraction 0 --quiet held/*.txt

mkdir -p runs logs
kinds() {   # kinds LAYER
    if [ -n "${KINDS:-}" ]; then echo "$KINDS"
    elif [ "$1" = ttt_mlp ]; then echo "fresh docs fresh+docs docs+60 fresh+docs+60"
    else echo "fresh docs fresh+docs docs+60"; fi
}
for L in $LAYERS; do
    for kind in $(kinds "$L"); do
        run=runs/$L-$kind
        [ -e "$run/latest" ] && continue
        case $kind in
        fresh) opts=(--layer "$L" --batch 8 --seq $W --steps 250 --warmup 25) ;;
        docs) opts=(--layer "$L" --docs --batch 1 --seq $((K * W)) --window $W --steps 125 --warmup 12) ;;
        *+docs | *+60) opts=(--init "runs/$L-${kind%+*}" --docs --batch 1 --seq $((K * W)) --window $W --steps 60
                             --warmup 6 --lr 1e-3) ;;
        *) echo "lm_length: unknown kind $kind (fresh, docs, P+docs, P+60)" >&2; exit 2 ;;
        esac
        echo "== train $run: ${opts[*]}"
        "$VTTT" train --data data --val heldout/train_000000.bin --out "$run" "${opts[@]}" \
            --threads "$THREADS" --ckpt-every 0 --log-every 25 2>&1 | tee "logs/$L-$kind.log" | tail -3
    done
done

for L in $LAYERS; do
    for kind in $(kinds "$L"); do
        echo
        echo "=== $L, $kind-trained (runs/$L-$kind)"
        VTTT=$VTTT THREADS=$THREADS bash "$HERE/lm_length_eval.sh" "runs/$L-$kind" tok.bpe $W $K held/*.txt
    done
done
