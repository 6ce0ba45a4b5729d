#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, then in clean directories outside
# the repository
#   1. the README's install line in an empty directory, and each entry point
#      (runstream, runstream/client, runstream/testing) imported alone by plain node;
#   2. the example app (examples/shop) with the tarball: plain `tsc` type-check
#      (NodeNext, skipLibCheck false), its tests, the README's and the guide's
#      TypeScript snippets type-checked against the installed package, then its
#      compiled JavaScript on plain node, end to end (scripts/example-e2e.mjs).
# Usage: scripts/check-package.sh [DATABASE_URL for the end-to-end run]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d -t runstream-package-XXXXXX)"
chmod 755 "$work"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
cd "$root"

echo "== npm pack (prepack builds dist/)"
tarball="$work/$(npm pack --silent --pack-destination "$work" | tail -n 1)"
tar -tzf "$tarball" > "$work/files.txt"
echo "$(wc -l < "$work/files.txt") files, $(du -k "$tarball" | cut -f1) KiB: $tarball"
if grep -vE '^package/(dist/.*|README\.md|LICENSE|package\.json)$' "$work/files.txt"; then
  echo "the tarball holds files other than dist/, README.md, LICENSE and package.json (above)"; exit 1
fi

# The README's install line, as written, with the tarball for `runstream`.
install_line=$(grep -m1 -E '^npm install runstream ' README.md)
dev_line=$(grep -m1 -E '^npm install --save-dev ' README.md)
echo "== README install line in an empty directory: $install_line"
mkdir "$work/empty" && cd "$work/empty"
npm init -y > /dev/null
# shellcheck disable=SC2086
npm install --no-audit --no-fund "$tarball" ${install_line#npm install runstream }
node --input-type=module -e '
  const client = await import("runstream/client")
  if (typeof client.RunstreamClient.layer !== "function") throw new Error("runstream/client has no RunstreamClient.layer")
  const loaded = Object.keys((await import("node:module")).createRequire(import.meta.url).cache)
  if (loaded.some((path) => /[\\/](pg|embedded-postgres)[\\/]/.test(path))) throw new Error("runstream/client loaded pg")
  const testing = await import("runstream/testing")
  if (typeof testing.RunstreamTest.layer !== "function") throw new Error("runstream/testing has no RunstreamTest.layer")
  const core = await import("runstream")
  if (typeof core.Programs.makeServerLayer !== "function") throw new Error("runstream has no Programs.makeServerLayer")
  console.log("runstream, runstream/client and runstream/testing import on plain node")'

echo "== the example app, installed from the tarball"
mkdir "$work/shop"
(cd "$root/examples/shop" && tar --exclude=node_modules --exclude=dist --exclude=.runstream -cf - .) | tar -xf - -C "$work/shop"
cd "$work/shop"
npm pkg set "dependencies.runstream=file:$tarball"
start=$(date +%s)
npm install --no-audit --no-fund
echo "installed in $(( $(date +%s) - start )) s"

echo "== the README's and the guide's snippets, in the example"
node "$root/scripts/extract-snippets.mjs" "$work/shop/snippets" "$root/README.md" "$root/docs/guide.md"

start=$(date +%s)
npx tsc --noEmit
echo "type-checked in $(( $(date +%s) - start )) s"
start=$(date +%s)
npm test
echo "tests in $(( $(date +%s) - start )) s"
npx tsc
start=$(date +%s)
node "$root/scripts/example-e2e.mjs" "$work/shop" ${1:-}
echo "end to end in $(( $(date +%s) - start )) s"
