#!/usr/bin/env bash
# Runs hwyquant-e2e on a one-layer model, two runs per preset, against a stand-in for
# llama-quantize that is hwyquant itself, so every comparison must report identical outputs.
#
# Usage: e2e_smoke.sh HWYQUANT_E2E HWYQUANT WORK_DIR
set -euo pipefail
e2e=$1
hwyquant=$2
work=$3
rm -rf "$work"
mkdir -p "$work"

stand_in="$work/llama-quantize-stand-in"
printf '#!/usr/bin/env bash\nexec "%s" quantize "$@"\n' "$hwyquant" >"$stand_in"
chmod +x "$stand_in"

presets=(Q4_0 Q3_K_M)
status=0
"$e2e" --hwyquant "$hwyquant" --llama-quantize "$stand_in" --runs 2 --layers 1 --dir "$work" \
  "${presets[@]}" >"$work/report.txt" || status=$?
cat "$work/report.txt"
if [ "$status" -ne 0 ]; then
  echo "e2e_smoke: hwyquant-e2e exited with $status" >&2
  exit 1
fi
for preset in "${presets[@]}"; do
  if ! grep -Eq "^$preset .* yes$" "$work/report.txt"; then
    echo "e2e_smoke: no identical-output row for $preset in the report" >&2
    exit 1
  fi
done
# Without --keep-model the benchmark leaves nothing behind but what this script made.
leftover=$(find "$work" -name '*.gguf' -o -name '.*.tmp-*')
if [ -n "$leftover" ]; then
  echo "e2e_smoke: files left behind: $leftover" >&2
  exit 1
fi
rm -rf "$work"
