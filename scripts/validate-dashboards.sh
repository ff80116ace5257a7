#!/usr/bin/env bash
# Validates grafana/dashboards/*.json against Grafana's own dashboard schema:
# the TypeScript types of @grafana/schema turned into JSON schema with
# ts-json-schema-generator, checked with ajv (all pinned). Tools are
# installed under target/ci-tools/node.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_DIR="$(pwd)/target/ci-tools/node"
mkdir -p "$NODE_DIR"
if [ ! -d "$NODE_DIR/node_modules/@grafana/schema" ]; then
    (cd "$NODE_DIR" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
        @grafana/schema@13.2.3 ts-json-schema-generator@2.4.0 ajv@8.20.0 >/dev/null)
fi
TYPES="$NODE_DIR/node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"
SCHEMA="$NODE_DIR/dashboard.schema.json"
"$NODE_DIR/node_modules/.bin/ts-json-schema-generator" --path "$TYPES" --type Dashboard --no-type-check -o "$SCHEMA"
NODE_PATH="$NODE_DIR/node_modules" node grafana/validate-schema.js "$SCHEMA" grafana/dashboards/*.json
