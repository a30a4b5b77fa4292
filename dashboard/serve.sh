#!/bin/sh
# The one command: install and build the dashboard if needed, then serve it.
#   dashboard/serve.sh [serve.mjs options]   e.g.
#   dashboard/serve.sh --broker ws://127.0.0.1:9001 --secrets /etc/vigie/central/secrets
# Prints the address on standard output; build messages go to standard error.
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund >&2
fi
if [ ! -f dist/index.html ] ||
   [ -n "$(find src index.html public vite.config.ts package-lock.json ../proto/vigie.proto \
            -newer dist/index.html 2>/dev/null | head -n 1)" ]; then
  npm run build >&2
fi
exec node serve.mjs "$@"
