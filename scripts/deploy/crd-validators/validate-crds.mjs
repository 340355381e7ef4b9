// Validates custom resources against their CRD schemas, as compiled by the
// @kubernetes-models packages (generated from the upstream CRDs' OpenAPI v3
// schemas: types, required fields, enums; unknown fields are not errors,
// as in the API server, which prunes them).
//
// Usage: node validate-crds.mjs <node_modules dir> <objects.json>
// objects.json: [{"source": "...", "object": {apiVersion, kind, ...}}, ...]
// Prints one line per object; exits 1 if any is invalid, 3 if a kind has no
// model here.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeModules, objectsFile] = process.argv.slice(2);
if (!nodeModules || !objectsFile) {
  console.error("usage: node validate-crds.mjs <node_modules> <objects.json>");
  process.exit(2);
}

// API group -> the package holding its models.
const PACKAGES = {
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

const items = JSON.parse(readFileSync(objectsFile, "utf8"));
let failed = 0;
let unknown = 0;
for (const { source, object } of items) {
  const [group, version] = object.apiVersion.split("/");
  const name = `${object.kind}/${object.metadata?.name}`;
  const pkg = PACKAGES[group];
  const file = pkg && join(nodeModules, pkg, group + "/" + version, object.kind + ".js");
  if (!file || !existsSync(file)) {
    console.log(`NO MODEL ${source}: ${object.apiVersion} ${name}`);
    unknown++;
    continue;
  }
  const mod = await import(pathToFileURL(file).href);
  const Model = mod[object.kind];
  try {
    new Model(object).validate();
    const pkgJson = JSON.parse(readFileSync(join(nodeModules, pkg, "package.json"), "utf8"));
    console.log(`ok ${source}: ${object.apiVersion} ${name} (${pkg}@${pkgJson.version})`);
  } catch (e) {
    console.log(`INVALID ${source}: ${object.apiVersion} ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : unknown ? 3 : 0);
