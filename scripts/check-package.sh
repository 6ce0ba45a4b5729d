#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, then in clean directories outside
# the repository
#   1. the README's install line in an empty directory, and each entry point
#      (runstream, runstream/client, runstream/testing) imported alone by plain node
#      (runstream without loading the NATS client; runstream/nats naming its
#      optional peer @nats-io/transport-node, which that directory lacks);
#   2. the example app (examples/shop) with the tarball: plain `tsc` type-check
#      (NodeNext, skipLibCheck false), its tests, the README's and the guide's
#      TypeScript snippets type-checked against the installed package, then its
#      compiled JavaScript on plain node, end to end (scripts/example-e2e.mjs).
# Usage: scripts/check-package.sh [admin URL of a Postgres server]: with one,
# the end-to-end run's server and worker share a fresh database created (and
# dropped) there; without, the server runs alone on an embedded Postgres.
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
echo "== README install lines in an empty directory: $install_line; $dev_line"
mkdir "$work/empty" && cd "$work/empty"
npm init -y > /dev/null
# shellcheck disable=SC2086
npm install --no-audit --no-fund "$tarball" ${install_line#npm install runstream }
# shellcheck disable=SC2086
npm install --no-audit --no-fund ${dev_line#npm install }
node --input-type=module -e '
  const client = await import("runstream/client")
  if (typeof client.RunstreamClient.layer !== "function") throw new Error("runstream/client has no RunstreamClient.layer")
  const loaded = Object.keys((await import("node:module")).createRequire(import.meta.url).cache)
  if (loaded.some((path) => /[\\/](pg|embedded-postgres)[\\/]/.test(path))) throw new Error("runstream/client loaded pg")
  const testing = await import("runstream/testing")
  if (typeof testing.RunstreamTest.layer !== "function") throw new Error("runstream/testing has no RunstreamTest.layer")
  const core = await import("runstream")
  if (typeof core.Programs.makeServerLayer !== "function") throw new Error("runstream has no Programs.makeServerLayer")
  const all = Object.keys((await import("node:module")).createRequire(import.meta.url).cache)
  if (all.some((path) => /[\\/]@nats-io[\\/]/.test(path))) throw new Error("runstream loaded the NATS client")
  // runstream/nats needs its optional peer, not installed here: a clear failure.
  const nats = await import("runstream/nats").then(() => "loaded", (error) => String(error))
  if (!/@nats-io\/transport-node/.test(nats)) throw new Error(`runstream/nats without @nats-io/transport-node: ${nats}`)
  console.log("runstream, runstream/client and runstream/testing import on plain node; runstream/nats asks for @nats-io/transport-node")'
# Effect is a peer: one copy in the app, of the 3 line.
copies=$(find . -path '*/node_modules/effect/package.json' | wc -l)
version=$(node -p 'require("effect/package.json").version')
echo "effect: $copies copy, $version"
[ "$copies" = 1 ] && [ "${version%%.*}" = 3 ] || { echo "expected one copy of effect 3.x"; exit 1; }

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
database_url=""
if [ -n "${1:-}" ]; then
  database="runstream_example_$(date +%s)_$$"
  sql() { node -e "const c=new (require('pg').Client)({connectionString:process.argv[1]});c.connect().then(()=>c.query(process.argv[2])).then(()=>c.end(),(e)=>{console.error(e.message);process.exit(1)})" "$1" "$2"; }
  (cd "$root" && sql "$1" "CREATE DATABASE $database")
  database_url="$(node -e "const u=new URL(process.argv[1]);u.pathname='/$database';console.log(u.href)" "$1")"
  trap '(cd "$root" && sql "$1" "DROP DATABASE IF EXISTS $database WITH (FORCE)"); [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fi
start=$(date +%s)
node "$root/scripts/example-e2e.mjs" "$work/shop" $database_url
echo "end to end in $(( $(date +%s) - start )) s"
