// Validate docs/asyncapi.json with the official AsyncAPI parser and docs/openapi.json
// with swagger-parser (OpenAPI 3.1). Prints one line per document; exits 1 on any
// error (tests/test_protocol_docs.py runs it).
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import SwaggerParser from "@apidevtools/swagger-parser";

const [asyncapiPath, openapiPath] = process.argv.slice(2);
let failed = false;

if (asyncapiPath) {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(readFileSync(asyncapiPath, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of diagnostics) {
    const where = (d.path || []).join("/");
    console.log(`asyncapi ${["error", "warning", "info", "hint"][d.severity]}: ${d.code} ${where}: ${d.message}`);
  }
  if (!document || errors.length) failed = true;
  else console.log(`asyncapi ok: ${document.allMessages().length} messages, ${document.allSchemas().length} schemas`);
}

if (openapiPath) {
  try {
    const api = await SwaggerParser.validate(JSON.parse(readFileSync(openapiPath, "utf8")));
    console.log(`openapi ok: ${api.openapi}, ${Object.keys(api.paths).length} paths`);
  } catch (error) {
    console.log(`openapi error: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
