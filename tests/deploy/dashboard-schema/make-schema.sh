#!/bin/sh
# Builds dashboard.schema.json: a JSON schema for a Grafana dashboard, generated from the
# TypeScript interface `Dashboard` that the npm package @grafana/schema publishes
# (dist/types/raw/dashboard/x/types.gen.d.ts). Versions are pinned in package.json and
# package-lock.json. Everything, npm's cache included, stays inside this folder.
#
#   tests/deploy/dashboard-schema/make-schema.sh      (run from anywhere; needs node + npm)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

npm ci --cache "$here/.npm-cache" --prefer-offline --no-audit --no-fund --ignore-scripts \
    --loglevel=error >/dev/null

types=node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts
raw=$(mktemp "$here/.raw-schema.XXXXXX")
trap 'rm -f "$raw"' EXIT

# --required       non-optional TypeScript members become "required"
# --noExtraProps   interfaces become closed objects (a misspelt key is an error)
# --strictNullChecks  `number | null` stays nullable, plain `number` does not
# --skipLibCheck   do not type-check @types/* (faster, nothing in them is used)
node node_modules/typescript-json-schema/bin/typescript-json-schema "$types" Dashboard \
    --required --noExtraProps --strictNullChecks --skipLibCheck -o "$raw"

# --noExtraProps also closes Record<string, T> (an index signature), which would forbid
# every key of panel options, query targets and custom field config; reopen those.
node fix-records.cjs "$raw" dashboard.schema.json
echo "wrote $here/dashboard.schema.json"
