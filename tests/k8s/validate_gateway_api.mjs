// Validate Gateway API objects against the JSON schemas of @kubernetes-models/gateway-api
// (generated from sigs.k8s.io/gateway-api's Go types). Used by tests/k8s/test_manifests.py.
//   node validate_gateway_api.mjs <node_modules dir>  < objects.json  > results.json
// Input: a JSON array of objects. Output: a JSON array of {kind, name, error|null}.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) {
  const [group, version] = obj.apiVersion.split("/");
  const name = obj.metadata?.name;
  const file = join(modules, "@kubernetes-models", "gateway-api", group, version, `${obj.kind}.js`);
  let error = null;
  try {
    const mod = await import(pathToFileURL(file).href);
    const Model = mod[obj.kind];
    if (!Model) throw new Error(`no model ${obj.kind} in ${file}`);
    new Model(obj).validate();
  } catch (e) {
    error = String(e?.message ?? e);
  }
  results.push({ kind: obj.kind, name, error });
}
process.stdout.write(JSON.stringify(results));
