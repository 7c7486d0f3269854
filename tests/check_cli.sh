#!/bin/sh
# shellcheck disable=SC2059,SC2086,SC2015
# (formats built from escapes, word-split option lists and a && b || fail are meant)
# check_cli.sh - tests of the `gear` command-line tool: every subcommand,
# its --help, --json output, error messages and exit codes (0 ok, 1 runtime
# failure, 2 usage error).
#
# Environment: GEAR_BIN  the built tool (default: ../tools/gear/gear from here)
#              srcdir    the source tree's tests/ directory or top directory
#              GEAR_CLI_WRAPPER  a command to run the tool under, e.g.
#                        "valgrind -q --leak-check=full --error-exitcode=99"
# Exit: 0 pass, 1 fail, 77 skip (no binary).

GEAR_BIN=${GEAR_BIN:-$(dirname "$0")/../tools/gear/gear}
if [ ! -x "$GEAR_BIN" ]; then
    echo "SKIP: gear binary not found (set GEAR_BIN)"
    exit 77
fi
srcdir=${srcdir:-$(dirname "$0")}
DATA=
for d in "$srcdir/data" "$srcdir/tests/data" "${top_srcdir:-.}/tests/data"; do
    [ -f "$d/smollm2-135m-persuasion-kv.safetensors" ] && DATA=$d && break
done

# Library warnings (e.g. a module skipped) would look like tool output on stderr.
GEAR_LOG_LEVEL=error
export GEAR_LOG_LEVEL

T=$(mktemp -d "${TMPDIR:-/tmp}/check_cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
failed=0
ran=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

# run EXPECTED_RC DESCRIPTION -- ARGS...: run the tool, keep stdout/stderr.
run() {
    want=$1 desc=$2
    shift 3
    ran=$((ran + 1))
    $GEAR_CLI_WRAPPER "$GEAR_BIN" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$desc: exit $rc, expected $want (gear $*)"
        sed 's/^/    stderr: /' "$T/err" | head -n 5
        return 1
    fi
    # Failures say something on stderr; successes keep it quiet.
    if [ "$want" -ne 0 ] && [ ! -s "$T/err" ]; then fail "$desc: no error message"; fi
    if [ "$want" -eq 0 ] && [ -s "$T/err" ] && [ -z "$GEAR_CLI_WRAPPER" ]; then
        fail "$desc: unexpected stderr"
        sed 's/^/    stderr: /' "$T/err" | head -n 5
    fi
    return 0
}

# has FILE TEXT DESCRIPTION: FILE (out or err) contains TEXT literally.
has() {
    grep -qF -- "$2" "$T/$1" || {
        fail "$3: $1 lacks '$2'"
        sed "s/^/    $1: /" "$T/$1" | head -n 5
    }
}

# JSON lines: every line an object; with python3 about, really parsed.
json_lines() {
    if [ ! -s "$T/out" ]; then fail "$1: no JSON output"; return; fi
    if grep -qv '^{.*}$' "$T/out"; then fail "$1: a line is not a JSON object"; fi
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json,sys
for l in open(sys.argv[1]): json.loads(l)' "$T/out" 2>/dev/null || fail "$1: invalid JSON"
    fi
}

lines() { wc -l <"$T/out" | tr -d ' '; }

# jget KEY: the raw value of "KEY" in the first line of out.
jget() { sed -n "1s/.*\"$1\":\([^,}]*\).*/\1/p" "$T/out"; }

# lt A B: A < B as numbers.
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

# Bytes as a printf format (octal escapes), so test data needs no Python.
# gen MODE SEED COUNT D [DESCR FORTRAN SHAPE]: MODE npy writes a .npy v1.0
# header first; COUNT fp16 values follow, channel 3 of every D a large one.
gen() {
    awk -v mode="$1" -v seed="$2" -v n="$3" -v d="$4" -v descr="$5" -v fortran="$6" \
        -v shape="$7" -v q="'" 'BEGIN {
        for (i = 32; i < 127; i++) ord[sprintf("%c", i)] = i
        if (mode == "npy") {
            h = "{" q "descr" q ": " q descr q ", " q "fortran_order" q ": " fortran ", " \
                q "shape" q ": (" shape "), }"
            pad = (64 - (10 + length(h) + 1) % 64) % 64
            hl = length(h) + pad + 1
            printf "\\223NUMPY\\001\\000\\%03o\\%03o", hl % 256, int(hl / 256)
            for (i = 1; i <= length(h); i++) printf "\\%03o", ord[substr(h, i, 1)]
            for (i = 0; i < pad; i++) printf " "
            printf "\\n"
        }
        s = seed
        for (i = 0; i < n; i++) {
            s = (s * 16807) % 2147483647
            e = 13 + int(s / 1024) % 4
            if (i % d == 3) e = 19
            b = int(s / 4096) % 2 * 32768 + e * 1024 + s % 1024
            printf "\\%03o\\%03o", b % 256, int(b / 256)
        }
    }'
}

# le64 N: N as 8 little-endian bytes.
le64() {
    n=$1 i=0 f=
    while [ $i -lt 8 ]; do
        f="$f$(printf '\\%03o' $((n % 256)))"
        n=$((n / 256)) i=$((i + 1))
    done
    printf "$f"
}

# safetensors FILE HEADER_JSON DATA_FORMAT
safetensors() {
    { le64 ${#2}; printf '%s' "$2"; printf "$3"; } >"$1"
}

# ---------------------------------------------------------------- inputs

printf "$(gen npy 1 6400 32 '<f2' False '2, 100, 32')" >"$T/x.npy"
printf "$(gen npy 2 2048 32 '<f2' False '64, 32')" >"$T/x2d.npy"
printf "$(gen npy 3 64 32 '<f2' False '64,')" >"$T/x1d.npy"
printf "$(gen npy 4 2048 32 '<f8' False '64, 32')" >"$T/f8.npy"
printf "$(gen npy 5 2048 32 '<f2' True '64, 32')" >"$T/fortran.npy"
head -c 3000 "$T/x.npy" >"$T/trunc.npy"
echo "this is not a numpy file" >"$T/text.npy"
KV=$(gen raw 9 2048 16)
HK='"layer.0.k":{"dtype":"F16","shape":[2,64,16],"data_offsets":[0,4096]}'
HV='"layer.0.v":{"dtype":"F16","shape":[2,64,16],"data_offsets":[4096,8192]}'
HEAD="{\"__metadata__\":{\"producer\":\"check_cli\"},$HK,$HV}"
KV2=$(gen raw 9 4096 16)
safetensors "$T/kv.st" "$HEAD" "$KV2"
safetensors "$T/trunc.st" "$HEAD" "$KV"
safetensors "$T/badjson.st" '{"layer.0.k":{"dtype":"F16","shape":[2,64' ""
safetensors "$T/i32.st" "$(echo "$HEAD" | sed 's/"F16"/"I32"/;s/4096\]/8192]/;s/\[4096,8192\]/[8192,12288]/')" "$KV2$KV"
safetensors "$T/novalue.st" "{$HK}" "$(gen raw 9 2048 16)"
safetensors "$T/nokv.st" '{"weights":{"dtype":"F16","shape":[2,64,16],"data_offsets":[0,4096]}}' "$(gen raw 9 2048 16)"
safetensors "$T/gap.st" "{$HK,$(echo "$HV" | sed 's/4096,8192/4100,8196/')}" "$KV2\\000\\000\\000\\000"
{ le64 1099511627776; printf '{}'; } >"$T/hugelen.st"

# ------------------------------------------------------------ top level

run 0 "--version" -- --version && has out "gear " "--version"
run 2 "no command" --
run 0 "--help" -- --help && has out "roundtrip" "--help"
run 0 "help" -- help && has out "Exit status" "help"
run 0 "help demo" -- help demo && has out "SYNTHETIC" "help demo"
run 2 "help of unknown command" -- help nosuch && has err "nosuch" "help nosuch"
run 2 "unknown command" -- nosuch && has err "unknown command 'nosuch'" "unknown command"

for c in backends presets roundtrip demo eval calibrate; do
    run 0 "$c --help" -- $c --help && has out "Usage: gear $c" "$c --help"
    run 2 "$c unknown option" -- $c --bogus && has err "unknown option '--bogus'" "$c --bogus"
    run 2 "$c stray argument" -- $c stray && has err "unexpected argument 'stray'" "$c stray"
done

# ------------------------------------------------------------- backends

run 0 "backends" -- backends && has out "ref" "backends" && has out "built-in" "backends" &&
    has out "reference: portable scalar C" "backends"
run 0 "backends --json" -- backends --json && json_lines "backends --json" &&
    has out '"name":"ref","available":true' "backends --json" &&
    has out '"description":"reference: portable scalar C' "backends --json"
run 2 "backends --json=1" -- backends --json=1

# -------------------------------------------------------------- presets

run 0 "presets" -- presets
for p in fp16 kivi2 kivi4 kcvt4 gear2 gearl2 gear4 gearl4; do has out "$p" "presets"; done
run 0 "presets --json" -- presets --json && json_lines "presets --json"
[ "$(lines)" -ge 8 ] || fail "presets --json: fewer than 8 lines"
has out '"preset":"kivi2","head_dim":128,"k":{"bits":2,"group":64' "presets --json"
has out '"bpe_formula"' "presets --json"
run 0 "presets --head-dim 64 --block 32" -- presets --head-dim 64 --block 32 --json &&
    has out '"head_dim":64' "presets --head-dim" && has out '"block":32' "presets --block"
run 2 "presets --head-dim 0" -- presets --head-dim 0 && has err "--head-dim" "presets --head-dim 0"
run 2 "presets --head-dim 4096" -- presets --head-dim 4096 &&
    has err "GEAR_ERR_INVALID_ARG" "presets --head-dim 4096"
run 2 "presets --block x" -- presets --block x && has err "'x'" "presets --block x"
run 2 "presets --block missing value" -- presets --block

# ------------------------------------------------------------ roundtrip

RT="roundtrip --preset kivi2 --kind key"
run 0 "roundtrip kivi2" -- $RT --in "$T/x.npy" --out "$T/y.npy" && json_lines "roundtrip"
[ "$(lines)" -eq 1 ] || fail "roundtrip: not exactly one line"
for k in preset kind bits group outliers rank iters block bpe bpe_formula header_bits rel_err \
    outlier_fraction compressed_bytes tokens_compressed; do
    has out "\"$k\":" "roundtrip field $k"
done
has out '"tokens_compressed":64' "roundtrip tokens_compressed"
has out '"tokens_tail":36' "roundtrip tokens_tail"
has out '"bpe_formula":2.5,' "roundtrip bpe_formula"
kivi2_err=$(jget rel_err)
if [ -f "$T/y.npy" ]; then
    [ "$(head -c 6 "$T/y.npy" | od -An -c | tr -d ' ')" = '223NUMPY' ] || fail "Y.npy magic"
    # float32 [2,100,32] = 25600 bytes after a 64-byte aligned header
    size=$(wc -c <"$T/y.npy" | tr -d ' ')
    [ $((size % 64)) -eq 0 ] && [ "$size" -gt 25600 ] || fail "roundtrip: Y.npy size $size"
else
    fail "roundtrip: no output file"
fi
# the float32 output is a valid input
run 0 "roundtrip of float32 output" -- $RT --in "$T/y.npy" --out "$T/y2.npy" &&
    has out '"dtype":"f32"' "roundtrip f32"
run 0 "roundtrip kivi4" -- roundtrip --preset kivi4 --kind key --in "$T/x.npy" --out "$T/y.npy"
lt "$(jget rel_err)" "$kivi2_err" || fail "roundtrip: kivi4 error not below kivi2"
run 0 "roundtrip fp16 on fp16 data" -- roundtrip --preset fp16 --kind value --in "$T/x.npy" \
    --out "$T/y.npy" && has out '"rel_err":0,' "fp16 exact"
run 0 "roundtrip overrides" -- roundtrip --preset gear2 --kind value --bits 4 --group 16 \
    --outliers 0.25 --rank 3 --iters 2 --block 32 --seed 5 --in "$T/x.npy" --out "$T/y.npy"
for kv in '"kind":"value"' '"bits":4' '"group":16' '"outliers":0.25' '"rank":3' '"iters":2' \
    '"block":32' '"seed":5' '"tokens_compressed":96'; do
    has out "$kv" "roundtrip overrides"
done
run 0 "roundtrip 2-D" -- roundtrip --preset gear2 --kind key --in "$T/x2d.npy" --out "$T/y.npy" \
    --json && has out '"heads":1' "roundtrip 2-D"
run 1 "roundtrip missing file" -- $RT --in "$T/none.npy" --out "$T/y.npy" &&
    has err "none.npy" "missing file" && has err "cannot open" "missing file"
run 1 "roundtrip truncated" -- $RT --in "$T/trunc.npy" --out "$T/y.npy" &&
    has err "trunc.npy" "truncated" && has err "truncated" "truncated"
run 1 "roundtrip not npy" -- $RT --in "$T/text.npy" --out "$T/y.npy" && has err "magic" "not npy"
run 1 "roundtrip float64" -- $RT --in "$T/f8.npy" --out "$T/y.npy" && has err "'<f8'" "float64"
run 1 "roundtrip fortran" -- $RT --in "$T/fortran.npy" --out "$T/y.npy" &&
    has err "fortran_order" "fortran"
run 1 "roundtrip 1-D" -- $RT --in "$T/x1d.npy" --out "$T/y.npy" && has err "dimensions" "1-D"
run 1 "roundtrip unwritable output" -- $RT --in "$T/x.npy" --out "$T/no/such/dir/y.npy" &&
    has err "y.npy" "unwritable"
run 2 "roundtrip unknown preset" -- roundtrip --preset kivi9 --kind key --in "$T/x.npy" \
    --out "$T/y.npy" && has err "unknown preset 'kivi9'" "unknown preset"
run 2 "roundtrip --bits 5" -- $RT --bits 5 --in "$T/x.npy" --out "$T/y.npy" &&
    has err "GEAR_ERR_INVALID_ARG" "--bits 5" && has err "bits 5" "--bits 5"
run 2 "roundtrip --bits abc" -- $RT --bits abc --in "$T/x.npy" --out "$T/y.npy" &&
    has err "--bits" "--bits abc"
run 2 "roundtrip --rank too big" -- $RT --rank 100 --in "$T/x.npy" --out "$T/y.npy" &&
    has err "rank" "--rank 100"
run 2 "roundtrip --outliers 1.5" -- $RT --outliers 1.5 --in "$T/x.npy" --out "$T/y.npy"
run 2 "roundtrip --kind" -- roundtrip --preset kivi2 --kind keys --in "$T/x.npy" \
    --out "$T/y.npy" && has err "'keys'" "--kind keys"
run 2 "roundtrip missing --in" -- $RT --out "$T/y.npy" && has err "--in" "missing --in"
run 2 "roundtrip missing --preset" -- roundtrip --kind key --in "$T/x.npy" --out "$T/y.npy"
run 2 "roundtrip value missing" -- $RT --in --out "$T/y.npy" && has err "needs a value" "--in"
run 2 "roundtrip unknown backend" -- $RT --backend nosuch --in "$T/x.npy" --out "$T/y.npy" &&
    has err "nosuch" "unknown backend"

# ----------------------------------------------------------------- demo

DEMO="demo --tokens 192 --heads 2 --head-dim 64"
run 0 "demo" -- $DEMO --preset kivi2 --preset gear2 && has out "SYNTHETIC" "demo header" &&
    has out "kivi2" "demo row" && has out "gear2" "demo row" && has out "attn err" "demo header"
run 0 "demo --json" -- $DEMO --preset kivi2 --preset gearl2 --preset gear2 --json &&
    json_lines "demo --json"
[ "$(lines)" -eq 3 ] || fail "demo --json: not 3 lines"
for k in bpe ratio real_ratio k_rel_err v_rel_err attn_rel_err compress_mb_s attn_us; do
    has out "\"$k\":" "demo field $k"
done
# the synthetic data has the structure GEAR exploits: errors fall kivi2 > gearl2 > gear2
for k in k_rel_err v_rel_err; do
    e=$(sed -n "s/.*\"$k\":\([^,}]*\).*/\1/p" "$T/out" | tr '\n' ' ')
    set -- $e
    lt "$2" "$1" && lt "$3" "$2" || fail "demo: $k not kivi2 > gearl2 > gear2 ($e)"
done
run 0 "demo --qheads" -- $DEMO --preset fp16 --qheads 6 --seed 3 --json &&
    has out '"qheads":6' "demo --qheads" && has out '"attn_rel_err":0,' "demo fp16 exact"
run 2 "demo unknown preset" -- demo --preset nosuch && has err "unknown preset 'nosuch'" "demo"
run 1 "demo CQ without --calib" -- $DEMO --preset cq-4c8b && has err "--calib FILE" "demo cq" &&
    [ ! -s "$T/out" ] || fail "demo CQ without --calib: printed a table first"
run 2 "demo --qheads not a multiple" -- $DEMO --qheads 3 && has err "--qheads" "demo --qheads"
run 2 "demo --tokens 0" -- demo --tokens 0 && has err "--tokens" "demo --tokens 0"
run 2 "demo --head-dim too big for block" -- demo --head-dim 4096 --tokens 64 --heads 1 &&
    has err "GEAR_ERR_INVALID_ARG" "demo --head-dim"
run 2 "demo unknown backend" -- demo --backend nosuch && has err "nosuch" "demo --backend"

# ----------------------------------------------------------------- eval

run 0 "eval" -- eval --in "$T/kv.st" --preset kivi2 --preset gear2 &&
    has out "kv.st" "eval header" && has out "synthetic" "eval header" && has out "gear2" "eval"
run 0 "eval --json" -- eval --in "$T/kv.st" --preset kivi4 --json && json_lines "eval --json" &&
    has out '"layers":1' "eval --json" && has out '"heads":2' "eval --json"
if [ -n "$DATA" ]; then
    run 0 "eval real KV" -- eval --in "$DATA/smollm2-135m-persuasion-kv.safetensors" \
        --preset gear2 --json && has out '"layers":4' "eval real" && has out '"head_dim":64' "eval real"
fi
run 2 "eval missing --in" -- eval && has err "--in" "eval missing --in"
run 1 "eval missing file" -- eval --in "$T/none.st" && has err "none.st" "eval missing file"
run 1 "eval truncated" -- eval --in "$T/trunc.st" && has err "trunc.st" "eval truncated"
run 1 "eval bad JSON" -- eval --in "$T/badjson.st" && has err "JSON" "eval bad JSON"
run 1 "eval header too long" -- eval --in "$T/hugelen.st" && has err "header length" "eval hugelen"
run 1 "eval dtype I32" -- eval --in "$T/i32.st" && has err "I32" "eval I32"
run 1 "eval no value tensor" -- eval --in "$T/novalue.st" && has err "no value tensor" "novalue"
run 1 "eval no KV tensors" -- eval --in "$T/nokv.st" && has err "layer.<i>.k" "eval nokv"
run 1 "eval gap in data" -- eval --in "$T/gap.st" && has err "gap" "eval gap"
run 1 "eval not safetensors" -- eval --in "$T/text.npy"
run 2 "eval unknown preset" -- eval --in "$T/kv.st" --preset nosuch

# ------------------------------------------------------------ calibrate

run 0 "calibrate cq" -- calibrate --in "$T/kv.st" --cq cq-2c4b --iters 3 --out "$T/cq.gcal" &&
    has out "codebooks: cq-2c4b" "calibrate cq" && has out "wrote" "calibrate cq"
run 0 "calibrate --json" -- calibrate --in "$T/kv.st" --cq cq-4c5b --hc-group 2 --hc-dim 16 \
    --out "$T/hc.gcal" --json && json_lines "calibrate --json" &&
    has out '"stored_heads":1' "calibrate --json" && has out '"cq_dim_v":4' "calibrate --json"
run 0 "eval --calib cq" -- eval --in "$T/kv.st" --calib "$T/cq.gcal" --preset cq-2c4b --preset kivi2 &&
    has out "cq-2c4b" "eval --calib"
run 0 "eval --calib head compression" -- eval --in "$T/kv.st" --calib "$T/hc.gcal" --preset gear2 \
    --preset cq-4c5b --json && json_lines "eval --calib hc"
run 1 "eval cq without calibration" -- eval --in "$T/kv.st" --preset cq-2c4b && has err "calibration" "cq no calib"
run 1 "eval cq other codebook" -- eval --in "$T/kv.st" --calib "$T/cq.gcal" --preset cq-2c8b &&
    has err "calibration has" "cq mismatch"
run 1 "eval --calib missing" -- eval --in "$T/kv.st" --calib "$T/none.gcal" && has err "none.gcal" "calib missing"
run 1 "eval --calib not a calibration" -- eval --in "$T/kv.st" --calib "$T/kv.st" && has err "magic" "calib magic"
run 2 "calibrate missing --out" -- calibrate --in "$T/kv.st" --cq cq-2c4b && has err "--out" "calibrate --out"
run 2 "calibrate nothing to learn" -- calibrate --in "$T/kv.st" --out "$T/x.gcal" && has err "nothing" "calibrate nothing"
run 2 "calibrate not CQ" -- calibrate --in "$T/kv.st" --cq kivi2 --out "$T/x.gcal" && has err "cq-" "calibrate kivi2"
run 2 "calibrate bad group" -- calibrate --in "$T/kv.st" --hc-group 3 --hc-dim 8 --out "$T/x.gcal" &&
    has err "divide" "calibrate group"
run 1 "calibrate too few tokens" -- calibrate --in "$T/kv.st" --cq cq-2c8b --out "$T/x.gcal" &&
    has err "at least 256" "calibrate tokens"
if [ -n "$DATA" ]; then
    run 1 "calibrate needs every layer" -- calibrate --in "$DATA/smollm2-135m-persuasion-kv.safetensors" \
        --cq cq-4c8b --out "$T/x.gcal" && has err "every layer" "calibrate layers"
fi
[ ! -e "$T/x.gcal" ] || fail "a failed calibrate left $T/x.gcal behind"

# --------------------------------------------------- failed output writes

if [ -w /dev/full ]; then
    ran=$((ran + 1))
    "$GEAR_BIN" presets >/dev/full 2>"$T/err"
    [ $? -eq 1 ] || fail "presets >/dev/full: a failed write must exit 1"
fi

echo "check_cli: $ran runs, $failed failures"
[ "$failed" -eq 0 ] || exit 1
exit 0
