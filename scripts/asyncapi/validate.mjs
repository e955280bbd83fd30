// Validates an AsyncAPI document with the official parser (schema + semantic rules).
// Usage: node validate.mjs <file.json>. Prints every diagnostic; exits 1 on any error or warning.
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const severities = ['error', 'warning', 'info', 'hint'];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], 'utf8'));
for (const d of diagnostics) {
  console.log(`${severities[d.severity]} ${d.code} at ${d.path.join('/')}: ${d.message}`);
}
const failing = diagnostics.filter((d) => d.severity <= 1);
if (!document || failing.length > 0) {
  console.log(`INVALID: ${failing.length} errors or warnings`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ${document.operations().length} operations, ${document.messages().length} messages`);
