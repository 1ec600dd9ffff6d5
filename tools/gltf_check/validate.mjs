// Validate GLB files with the Khronos glTF Validator (tests/test_fit_export.py); prints one JSON report per file
// ({file, errors, warnings, infos, messages}) on one line each. Exit 1 when any file has errors.
import { readFileSync } from "node:fs";
import validator from "gltf-validator";

let bad = 0;
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)));
  const s = report.issues;
  if (s.numErrors > 0) bad += 1;
  console.log(JSON.stringify({ file, errors: s.numErrors, warnings: s.numWarnings,
    infos: s.numInfos, messages: s.messages.slice(0, 20) }));
}
process.exit(bad ? 1 : 0);
