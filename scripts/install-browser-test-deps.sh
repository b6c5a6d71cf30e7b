#!/usr/bin/env bash
# Installs what the browser test of the web page needs: Debian's Chromium and chromedriver, Node.js,
# and playwright-core from tests/browser/package-lock.json (npm never downloads a browser here).
set -euo pipefail
cd "$(dirname "$0")/.."

# Some Node.js builds (NodeSource's) ship npm inside the nodejs package; Debian's needs its own.
npm_package=()
command -v npm >/dev/null 2>&1 || npm_package=(npm)
./scripts/install-deps.sh chromium chromium-driver nodejs "${npm_package[@]}"

# playwright-core has no install script and fetches no browser; the flag makes that explicit.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
want=$(node -p "require('./tests/browser/package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "try { require('./tests/browser/node_modules/playwright-core/package.json').version } catch (e) { '' }")
if [ "$want" = "$have" ]; then
  echo "install-browser-test-deps: tests/browser/node_modules is up to date"
else
  (cd tests/browser && npm ci --no-audit --no-fund --ignore-scripts)
fi
node -e "require('./tests/browser/node_modules/playwright-core'); console.log('install-browser-test-deps: playwright-core', require('./tests/browser/node_modules/playwright-core/package.json').version)"
/usr/bin/chromium --version 2>/dev/null | awk "NR == 1"
