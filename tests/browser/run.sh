#!/usr/bin/env bash
# ctest entry of the browser test: checks Node.js, Chromium and playwright-core, then runs
# web_test.js. Missing pieces skip the test (exit 77), or fail it when HWYQUANT_REQUIRE_BROWSER=1.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
chromium="${HWYQUANT_CHROMIUM:-/usr/bin/chromium}"

missing=""
command -v node >/dev/null 2>&1 || missing="Node.js (node)"
[ -x "$chromium" ] || missing="${missing:+$missing, }Chromium ($chromium)"
[ -f "$here/node_modules/playwright-core/package.json" ] ||
  missing="${missing:+$missing, }playwright-core ($here/node_modules)"
if [ -n "$missing" ]; then
  echo "browser test: missing $missing; run scripts/install-browser-test-deps.sh"
  if [ "${HWYQUANT_REQUIRE_BROWSER:-0}" = "1" ]; then
    echo "browser test: FAILED (HWYQUANT_REQUIRE_BROWSER=1)"
    exit 1
  fi
  exit 77
fi
exec node "$here/web_test.js" "$@"
