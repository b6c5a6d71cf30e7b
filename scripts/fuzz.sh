#!/usr/bin/env bash
# Builds every libFuzzer target in fuzz/ with clang and runs each for a bounded time; fails on any crash.
#
# Usage: scripts/fuzz.sh [SECONDS]   seconds per fuzzer (default 60, what CI runs; 3600 for a
#                                    long run). Build dir: $HWYQUANT_FUZZ_BUILD_DIR or build-fuzz.
# The fuzzers are whatever fuzz/CMakeLists.txt registers with hwyquant_add_fuzzer (listed in
# <build>/fuzz/fuzzers.txt). Seeds are generated here (nothing binary is committed), plus any
# files in fuzz/seeds/<name>/. Inputs libFuzzer finds are kept in <build>/fuzz/corpus/<name> so
# later runs continue from them; crashes land in <build>/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS per fuzzer, a positive integer]" >&2
  exit 2
fi
build_dir=${HWYQUANT_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${HWYQUANT_JOBS:-$(nproc)}

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi

build_start=$SECONDS
# -O2 with assertions on; fuzz/CMakeLists.txt adds line tables for readable crash reports.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O2 -DHWYQUANT_BUILD_FUZZ=ON \
  -DHWYQUANT_BUILD_TESTS=OFF -DHWYQUANT_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" --target hwyquant_fuzzers -j "$jobs"
build_seconds=$((SECONDS - build_start))

mapfile -t fuzzers < "$build_dir/fuzz/fuzzers.txt"
if [ ${#fuzzers[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzzers registered in fuzz/CMakeLists.txt" >&2
  exit 1
fi

# Writes the generated seed inputs of fuzzer $1 into directory $2.
generate_seeds() {
  python3 - "$1" "$2" <<'PY'
import json, os, struct, sys

name, out = sys.argv[1], sys.argv[2]
count = 0

def seed(tag, data):
    global count
    with open(os.path.join(out, tag), "wb") as f:
        f.write(bytes(data))
    count += 1

if name == "quantize_fuzz":
    # Layout in fuzz/quantize_fuzz.cc: type, length, mode, exponent byte, alignment, values.
    types = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
             "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
    block = {t: (1 if t in ("f32", "f16", "bf16") else 256 if t.endswith("_K") else 32)
             for t in types}
    unit = 150  # exponent byte for 2^0
    for ti, t in enumerate(types):
        for enc in range(5):
            for imatrix in (0, 8):
                # Header only: the input-seeded stream fills one row of one block.
                seed(f"{t}-enc{enc}-im{imatrix}", [ti, 0, enc | imatrix, unit - 7, 0])
        # Several rows and blocks, misaligned buffers, 2 threads.
        seed(f"{t}-shape", [ti, 3, 0x10 | 1 | 0xC0, unit - 5, 0x2B])
        seed(f"{t}-dequant", [ti, 1, 0x20 | 0x40, unit, 0])
        n = block[t]
        # All zeros, a constant, exact ties of 1/8 (int8 * 2^-3), and positives only.
        seed(f"{t}-zeros", [ti, 0, 1, unit, 0] + [0] * n)
        seed(f"{t}-const", [ti, 0, 1, unit - 3, 0] + [1] * n)
        seed(f"{t}-ties", [ti, 0, 1 | 8, unit - 3, 0] + [(i * 7) % 256 for i in range(n)])
        seed(f"{t}-relu", [ti, 0, 1, unit - 6, 0] + [(i * 37) % 128 for i in range(n)])
        # f32 specials: NaN, +-Inf, -0, subnormals, half overflow edges (blocks get finite ones).
        specials = [0x7FC00000, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001,
                    0x807FFFFF, 0x00800000, 0x477FE000, 0x477FF000, 0x477FEFFF, 0x387FC000,
                    0x33800000, 0x3F800000, 0xBF800000, 0x7F7FFFFF]
        vals = (specials * (n // len(specials) + 1))[:max(n, len(specials))]
        seed(f"{t}-specials", [ti, max(0, len(vals) // n - 1) if n > 1 else len(vals) - 1, 0,
                               unit, 0] + list(b"".join(struct.pack("<I", v) for v in vals)))
elif name == "gguf_reader_fuzz":
    # Tiny GGUF v3 files: no tensors, every KV type, and one tensor of several types.
    def s(x):
        x = x.encode()
        return struct.pack("<Q", len(x)) + x
    def gguf(kvs, tensors, align=32):
        b = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
        for key, vtype, payload in kvs:
            b += s(key) + struct.pack("<I", vtype) + payload
        offset, data = 0, bytearray()
        for tname, dims, ttype, blob in tensors:
            b += s(tname) + struct.pack("<I", len(dims))
            b += b"".join(struct.pack("<Q", d) for d in dims)
            b += struct.pack("<IQ", ttype, offset)
            data += blob + b"\0" * ((-len(blob)) % align)
            offset = len(data)
        b += b"\0" * ((-len(b)) % align)
        return bytes(b + data)
    seed("empty", gguf([], []))
    kvs = [("general.architecture", 8, s("llama")), ("u8", 0, b"\x07"), ("i8", 1, b"\xf9"),
           ("u16", 2, struct.pack("<H", 7)), ("i16", 3, struct.pack("<h", -7)),
           ("u32", 4, struct.pack("<I", 7)), ("i32", 5, struct.pack("<i", -7)),
           ("f32", 6, struct.pack("<f", 0.5)), ("bool", 7, b"\x01"),
           ("u64", 10, struct.pack("<Q", 7)), ("i64", 11, struct.pack("<q", -7)),
           ("f64", 12, struct.pack("<d", 0.25)),
           ("arr", 9, struct.pack("<IQ", 4, 3) + struct.pack("<3I", 1, 2, 3)),
           ("strs", 9, struct.pack("<IQ", 8, 2) + s("a") + s("bc")),
           ("general.alignment", 4, struct.pack("<I", 32))]
    seed("kvs", gguf(kvs, []))
    seed("tensors", gguf(kvs[:1], [("f32", [4], 0, b"\0" * 16), ("f16", [8, 2], 1, b"\0" * 32),
                                   ("q4_0", [32], 2, b"\0" * 18), ("q4_K", [256], 12, b"\0" * 144),
                                   ("bf16", [2, 2, 2], 30, b"\0" * 16)]))
elif name == "safetensors_fuzz":
    # Tiny safetensors files: 8-byte header length, JSON header, tensor bytes.
    def st(header, data):
        h = json.dumps(header).encode()
        return struct.pack("<Q", len(h)) + h + data
    seed("f32", st({"__metadata__": {"format": "pt"},
                    "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16))
    seed("mixed", st({"a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
                      "b": {"dtype": "F16", "shape": [2, 1], "data_offsets": [8, 12]}},
                     b"\x80\x3f" * 6))
print(f"{name}: {count} generated seeds")
PY
}

# Per-fuzzer libFuzzer flags: quantize_fuzz reads up to 4 rows of 8 K-quant blocks as raw f32.
fuzzer_flags() {
  case "$1" in
    quantize_fuzz) echo "-max_len=16384" ;;
    *) echo "" ;;
  esac
}

# A 32 MB quarantine instead of ASan's 256 MB default: with the default, gguf_reader_fuzz's RSS
# grew past -rss_limit_mb (1 GB after 40 s, 2.7 GB at the limit) while ASan's report showed
# 25 MB live and 2.4 GB quarantined; with 32 MB it stays near 110 MB. Use-after-free within
# one input is still caught.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:quarantine_size_mb=32}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
artifacts="$build_dir/fuzz/artifacts"
mkdir -p "$artifacts"
failed=()
summary=()
for name in "${fuzzers[@]}"; do
  binary="$build_dir/fuzz/$name"
  corpus="$build_dir/fuzz/corpus/$name"
  seeds="$build_dir/fuzz/seeds/$name"
  log="$build_dir/fuzz/$name.log"
  rm -rf "$seeds"
  mkdir -p "$corpus" "$seeds"
  generate_seeds "$name" "$seeds"
  if [ -d "fuzz/seeds/$name" ]; then cp -r "fuzz/seeds/$name/." "$seeds/"; fi
  echo "=== $name: ${seconds}s (log $log)"
  start=$SECONDS
  # shellcheck disable=SC2046
  if "$binary" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2560 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" $(fuzzer_flags "$name") \
      "$corpus" "$seeds" >"$log" 2>&1; then
    status=ok
  else
    status="FAILED (exit $?)"
    failed+=("$name")
    tail -n 60 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  summary+=("$(printf '%-20s %-18s %4ss  %s runs  %s  corpus %s files' "$name" "$status" \
    $((SECONDS - start)) "${runs:-?}" "${cov:-cov: ?}" "$(find "$corpus" -type f | wc -l)")")
done

echo "=== fuzz summary (build ${build_seconds}s, ${seconds}s per fuzzer)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]}; reproduce with <build>/fuzz/NAME <artifact>:" >&2
  ls -1 "$artifacts" >&2 || true
  exit 1
fi
