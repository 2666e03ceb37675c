// Bundles src/harness.js with livekit-client from node_modules into dist/harness.js.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const result = await build({
  entryPoints: [path.join(here, 'src/harness.js')],
  outfile: path.join(here, 'dist/harness.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'chrome120',
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
});
const out = Object.entries(result.metafile.outputs).find(([f]) => f.endsWith('harness.js'));
console.log(`built dist/harness.js (${Math.round(out[1].bytes / 1024)} KiB)`);
