// The web page's client (api/web/client.js) from this package's core: one readable,
// unminified ES module bundled by esbuild from dist/index.js (the tsc output; no React,
// Vue or Yjs). The same dist gives the same bytes: no timestamps, no absolute paths.
//
//   node scripts/bundle-web.mjs           write api/web/client.js   (npm run bundle)
//   node scripts/bundle-web.mjs --check   build to a temp file, fail if api/web/client.js
//                                          differs                   (npm run check-bundle)
import { build } from "esbuild";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ENTRY = join(PACKAGE, "dist/index.js");
const TARGET = resolve(PACKAGE, "../../api/web/client.js");
const BANNER = [
  "// GENERATED FILE, DO NOT EDIT: bundled from clients/typescript (@tripsage/sync-client)",
  "// by `npm run bundle` there; `npm run check-bundle` fails when it is out of date.",
  "// The browser client of the trip page (api/web/app.js imports it as /static/client.js).",
].join("\n");

async function bundle(outfile) {
  if (!existsSync(ENTRY)) throw new Error(`${ENTRY} is missing: run npm run build first`);
  await build({
    absWorkingDir: PACKAGE,
    entryPoints: [ENTRY],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: false,
    sourcemap: false,
    legalComments: "inline",
    charset: "utf8",
    banner: { js: BANNER },
    logLevel: "warning",
  });
}

if (process.argv.includes("--check")) {
  const dir = mkdtempSync(join(tmpdir(), "tripsage-bundle-"));
  try {
    const fresh = join(dir, "client.js");
    await bundle(fresh);
    const current = existsSync(TARGET) ? readFileSync(TARGET) : Buffer.alloc(0);
    if (!readFileSync(fresh).equals(current)) {
      console.error(
        "api/web/client.js is not the bundle of clients/typescript: run `npm run bundle` there and commit it",
      );
      process.exitCode = 1;
    } else {
      console.log("api/web/client.js is up to date");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  await bundle(TARGET);
  console.log(`wrote ${TARGET}`);
}
