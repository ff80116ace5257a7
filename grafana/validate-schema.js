// Validates dashboard JSON files against Grafana's dashboard schema (a JSON
// schema generated from the TypeScript types of the npm package
// @grafana/schema; see scripts/validate-dashboards.sh). Reports every error.
// Usage: node validate-schema.js dashboard.schema.json dashboard.json...
const Ajv = require('ajv');
const fs = require('fs');
const schema = JSON.parse(fs.readFileSync(process.argv[2]));
const ajv = new Ajv({allErrors: true, strict: false});
const validate = ajv.compile(schema);
let failed = 0;
for (const f of process.argv.slice(3)) {
  const ok = validate(JSON.parse(fs.readFileSync(f)));
  if (!ok) { failed++; console.log(f); const seen = new Set(); for (const e of validate.errors) { const m = `  ${e.instancePath.replace(/\/\d+/g,'/N')} ${e.message}`; if (!seen.has(m)) { seen.add(m); console.log(m); } } }
  else console.log(`${f}: valid against Grafana's dashboard schema`);
}
process.exit(failed ? 1 : 0);
