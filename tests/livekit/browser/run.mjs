#!/usr/bin/env node
// Runs the LiveKit harness page (index.html + dist/harness.js) in headless Debian Chromium
// through playwright-core, waits, and writes window.report to a JSON file.
//
//   node run.mjs --url ws://127.0.0.1:7895 --api-key devkey --api-secret secret \
//       --room r1 --identity user1 --mic speech.wav --mic-pad-start-ms 1000 --mic-pad-end-ms 20000 \
//       --until "attr:lk.agent.state=listening after finals>=1" --duration-ms 30000 --report out.json
//
// Fake microphone: Chromium plays the WAV given with --use-file-for-fake-audio-capture
// from the moment the page opens the microphone (getUserMedia), and LOOPS it when it reaches
// the end. So pad it: --mic-pad-start-ms puts silence before the speech (time for the room
// to connect and the track to be subscribed: the mic opens at --mic-when, default
// "connected"), --mic-pad-end-ms puts silence after it (make it longer than the rest of
// the run so the speech plays once). --mic-once appends Chromium's "%noloop" suffix
// instead (silence after the end of the file).
//
// Exit status: 0 when the run finished (and --until held, if given); 1 on any failure
// (connect failure, --until not met within --duration-ms, a page error, Chromium crash),
// with the reason on stderr and in report.runner.result. 2 for bad arguments.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { mintToken, parseKv } from './token.mjs';
import { padWav } from './wav.mjs';
import { parseCondition } from './src/conditions.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const T0 = Date.now();
const since = () => Date.now() - T0;

const USAGE = `usage: node run.mjs --url ws://127.0.0.1:PORT (--token JWT | --api-key K --api-secret S --room R --identity ID)
  [--name NAME] [--token-attrs k=v,...]       participant name / initial attributes (minted tokens)
  [--mic FILE.wav | --mic fake]               publish a fake microphone (WAV, or Chromium's beep)
  [--mic-pad-start-ms N] [--mic-pad-end-ms N] pad the WAV with silence (see the header of run.mjs)
  [--mic-once]                                play the WAV once (%noloop) instead of looping
  [--mic-when COND]                           open+publish the mic when COND holds (default: connected)
  [--dtx on|off] [--red on|off]               mic publish options (livekit-client default: on, on)
  [--duration-ms N]                           maximum run time after page load (default 20000)
  [--until COND] [--linger-ms N]              stop when COND holds (+ N ms); failing if it never does
  [--threshold RMS]                           audio frame RMS counted as sound (default 0.01)
  [--send-text T] [--send-text-topic TOPIC] [--send-text-attrs JSON|k=v,...]
  [--send-data T] [--send-data-topic TOPIC]
  [--set-attr JSON|k=v,...]                   self-test actions: text, data, then attributes,
  [--action-when COND] [--action-delay-ms N]  when COND holds (default participants>=1), N ms apart
  [--actions JSON]                            [{type,when,delayMs,...}] (see src/harness.js)
  [--text-topics a,b]                         text stream topics (default lk.transcription,lk.chat)
  [--report out.json] [--quiet]
  [--no-loopback-flag]                        do not pass --allow-loopback-in-peer-connection
  [--chromium PATH] [--chromium-arg FLAG]...  (default /usr/bin/chromium)
  [--fail-on-console-error]                   console.error in the page fails the run
  [--connect-timeout-ms N]                    (default 15000)
COND grammar: src/conditions.js, e.g. "attr:lk.agent.state=listening after texts>=1", "audio-ms>=500".`;

function die(msg, code = 2) {
  process.stderr.write(`run.mjs: ${msg}\n`);
  process.exit(code);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string' }, token: { type: 'string' },
      'api-key': { type: 'string', default: process.env.LIVEKIT_API_KEY },
      'api-secret': { type: 'string', default: process.env.LIVEKIT_API_SECRET },
      room: { type: 'string' }, identity: { type: 'string' }, name: { type: 'string' },
      'token-attrs': { type: 'string' },
      mic: { type: 'string' }, 'mic-pad-start-ms': { type: 'string', default: '0' },
      'mic-pad-end-ms': { type: 'string', default: '0' }, 'mic-once': { type: 'boolean', default: false },
      'mic-when': { type: 'string' }, dtx: { type: 'string' }, red: { type: 'string' },
      'duration-ms': { type: 'string', default: '20000' }, until: { type: 'string' },
      'linger-ms': { type: 'string', default: '0' }, threshold: { type: 'string' },
      'send-text': { type: 'string' }, 'send-text-topic': { type: 'string' }, 'send-text-attrs': { type: 'string' },
      'send-data': { type: 'string' }, 'send-data-topic': { type: 'string' }, 'set-attr': { type: 'string' },
      'action-when': { type: 'string' }, 'action-delay-ms': { type: 'string' }, actions: { type: 'string' },
      'text-topics': { type: 'string' }, report: { type: 'string' }, quiet: { type: 'boolean', default: false },
      'no-loopback-flag': { type: 'boolean', default: false },
      chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
      'chromium-arg': { type: 'string', multiple: true, default: [] },
      'fail-on-console-error': { type: 'boolean', default: false },
      'connect-timeout-ms': { type: 'string', default: '15000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }));
} catch (e) {
  die(`${e.message}\n${USAGE}`);
}
if (args.help) { console.log(USAGE); process.exit(0); }
if (!args.url) die(`--url is required\n${USAGE}`);
const intArg = (k) => {
  const n = Number(args[k]);
  if (!Number.isFinite(n) || n < 0) die(`--${k} must be a non-negative number`);
  return n;
};
const durationMs = intArg('duration-ms');
const lingerMs = intArg('linger-ms');
const connectTimeoutMs = intArg('connect-timeout-ms');
for (const k of ['until', 'mic-when', 'action-when']) {
  if (args[k]) try { parseCondition(args[k]); } catch (e) { die(`--${k}: ${e.message}`); }
}
if (!fs.existsSync(args.chromium)) die(`Chromium not found at ${args.chromium} (run setup.sh, or apt-get install chromium)`);
if (!fs.existsSync(path.join(HERE, 'dist/harness.js'))) die('dist/harness.js is missing: run setup.sh (or node build.mjs)');

const runner = {
  args: { ...args, token: args.token ? '(given)' : undefined, 'api-secret': args['api-secret'] ? '(given)' : undefined },
  startedAt: new Date(T0).toISOString(),
  console: [],      // every console message of the page {t, type, text, location}
  pageErrors: [],   // uncaught exceptions {t, message, stack}
  requestFailures: [],
  timing: {},
  result: null,
};
// Tokens and join requests make messages unreadable (and are secrets in other settings).
const redact = (s) => String(s)
  .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<jwt>')
  .replace(/join_request=[^&'"\s]+/g, 'join_request=<…>');
const say = (s) => { if (!args.quiet) process.stderr.write(`[run.mjs +${since()}ms] ${s}\n`); };

// ---------- token ----------
let token = args.token;
if (!token) {
  try {
    token = await mintToken({
      apiKey: args['api-key'], apiSecret: args['api-secret'], room: args.room, identity: args.identity,
      name: args.name, attributes: parseKv(args['token-attrs']),
    });
  } catch (e) { die(`${e.message} (or pass --token)`); }
}

// ---------- fake microphone ----------
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-harness-'));
const chromiumArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions',
  '--autoplay-policy=no-user-gesture-required',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
];
if (!args['no-loopback-flag']) chromiumArgs.push('--allow-loopback-in-peer-connection');
let micInfo = null;
if (args.mic && args.mic !== 'fake') {
  if (!fs.existsSync(args.mic)) die(`--mic ${args.mic}: no such file`);
  const padded = path.join(tmp, 'mic.wav');
  try {
    micInfo = padWav(args.mic, padded, intArg('mic-pad-start-ms'), intArg('mic-pad-end-ms'));
  } catch (e) { die(`--mic: ${e.message}`); }
  micInfo.file = args.mic;
  micInfo.loops = !args['mic-once'];
  chromiumArgs.push(`--use-file-for-fake-audio-capture=${padded}${args['mic-once'] ? '%noloop' : ''}`);
} else if (args.mic === 'fake') {
  micInfo = { file: null, fake: 'Chromium beep' };
}
chromiumArgs.push(...args['chromium-arg']);
runner.mic = micInfo;
runner.chromiumArgs = chromiumArgs;

// ---------- static server on 127.0.0.1 ----------
const FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/dist/harness.js': ['dist/harness.js', 'text/javascript; charset=utf-8'],
  '/dist/harness.js.map': ['dist/harness.js.map', 'application/json'],
};
const server = http.createServer((req, res) => {
  const p = new URL(req.url, 'http://x').pathname;
  if (p === '/favicon.ico') { res.writeHead(204).end(); return; }
  const f = FILES[p];
  if (!f) { res.writeHead(404).end('not found'); return; }
  res.writeHead(200, { 'content-type': f[1], 'cache-control': 'no-store' });
  fs.createReadStream(path.join(HERE, f[0])).pipe(res);
});
await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

// ---------- page URL ----------
const qs = new URLSearchParams({ url: args.url, token });
const setq = (k, v) => { if (v !== undefined && v !== null) qs.set(k, String(v)); };
if (micInfo) { qs.set('mic', '1'); setq('micWhen', args['mic-when']); }
const onoff = (k) => {
  if (args[k] === undefined) return undefined;
  if (!['on', 'off'].includes(args[k])) die(`--${k} takes on or off`);
  return args[k] === 'on' ? '1' : '0';
};
setq('dtx', onoff('dtx'));
setq('red', onoff('red'));
setq('until', args.until);
setq('threshold', args.threshold);
setq('sendText', args['send-text']);
setq('sendTextTopic', args['send-text-topic']);
setq('sendTextAttrs', args['send-text-attrs']);
setq('sendData', args['send-data']);
setq('sendDataTopic', args['send-data-topic']);
setq('setAttr', args['set-attr']);
setq('actionWhen', args['action-when']);
setq('actionDelayMs', args['action-delay-ms']);
setq('actions', args.actions);
setq('textTopics', args['text-topics']);
const pageUrl = `${origin}/index.html?${qs}`;

// ---------- run ----------
let browser = null;
let page = null;
let failure = null;
let stopRequested = null;
let closing = false;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { stopRequested = sig; });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  const tLaunch = Date.now();
  browser = await chromium.launch({
    executablePath: args.chromium, headless: true, args: chromiumArgs, timeout: 60000,
  });
  runner.chromiumVersion = browser.version();
  runner.timing.launchMs = Date.now() - tLaunch;
  say(`Chromium ${runner.chromiumVersion} up in ${runner.timing.launchMs} ms`);
  const context = await browser.newContext();
  await context.grantPermissions(['microphone'], { origin });
  page = await context.newPage();
  page.on('console', (m) => {
    const loc = m.location();
    runner.console.push({ t: since(), type: m.type(), text: redact(m.text()), location: loc?.url ? redact(`${loc.url}:${loc.lineNumber}`) : undefined });
  });
  page.on('pageerror', (e) => { runner.pageErrors.push({ t: since(), message: redact(e.message), stack: redact(e.stack) }); });
  page.on('crash', () => { failure ??= 'the page crashed'; });
  page.on('requestfailed', (r) => runner.requestFailures.push({ t: since(), url: redact(r.url()), error: r.failure()?.errorText }));
  browser.on('disconnected', () => { if (!closing) failure ??= 'Chromium exited'; });

  const tGoto = Date.now();
  await page.goto(pageUrl, { waitUntil: 'load', timeout: 30000 });
  runner.timing.pageLoadMs = Date.now() - tGoto;
  const tStart = Date.now();
  let untilAt = null;
  let status = null;
  while (!failure) {
    status = await page.evaluate(() => window.harnessStatus?.() ?? null);
    const elapsed = Date.now() - tStart;
    if (!status) { failure = 'the harness did not start (dist/harness.js failed to load?)'; break; }
    if (status.fatal) { failure = status.fatal; break; }
    if (status.connectedAt == null && elapsed > connectTimeoutMs) {
      failure = `not connected after ${connectTimeoutMs} ms (state ${status.connectionState})`;
      break;
    }
    if (status.connectedAt != null && runner.timing.connectedMs == null) {
      runner.timing.connectedMs = Date.now() - tGoto;
      say(`connected (${runner.timing.connectedMs} ms after page load began)`);
    }
    if (args.until && status.untilMetAt != null && untilAt == null) {
      untilAt = Date.now();
      say(`until condition held at page t=${status.untilMetAt} ms`);
    }
    if (untilAt != null && Date.now() - untilAt >= lingerMs) break;
    if (elapsed >= durationMs) {
      if (args.until) failure = `--until "${args.until}" did not hold within --duration-ms ${durationMs}`;
      break;
    }
    if (stopRequested) { failure = `stopped by ${stopRequested}`; break; }
    await sleep(100);
  }
  runner.timing.runMs = Date.now() - tStart;
} catch (e) {
  failure ??= `runner error: ${e.message}`;
}

// ---------- collect ----------
closing = true;
let report = null;
if (page && !page.isClosed()) {
  try {
    report = JSON.parse(await page.evaluate(() => window.harnessReportJson()));
  } catch (e) {
    failure ??= `could not read window.report: ${e.message}`;
  }
  try {
    await Promise.race([page.evaluate(() => window.harnessDisconnect()), sleep(2000)]);
  } catch { /* page gone */ }
}
if (!failure && runner.pageErrors.length) failure = `page error: ${runner.pageErrors[0].message}`;
const consoleErrors = runner.console.filter((c) => c.type === 'error');
if (!failure && args['fail-on-console-error'] && consoleErrors.length) failure = `console error: ${consoleErrors[0].text}`;
if (!failure && report?.errors?.length) {
  // page-side errors caught by the harness (action failures, getStats, audio graph)
  failure = `harness error in ${report.errors[0].where}: ${report.errors[0].message}`;
}
runner.timing.totalMs = since();
if (failure) failure = redact(failure);
runner.result = { ok: !failure, reason: failure ?? 'ok' };
for (const e of report?.errors ?? []) e.message = redact(e.message);
const out = { ...(report ?? {}), runner };

try { await browser?.close(); } catch { /* already gone */ }
server.close();
fs.rmSync(tmp, { recursive: true, force: true });

if (args.report) {
  fs.mkdirSync(path.dirname(path.resolve(args.report)), { recursive: true });
  fs.writeFileSync(args.report, JSON.stringify(out, null, 1));
}
say(summary(out));
if (failure) {
  process.stderr.write(`run.mjs: FAILED: ${failure}\n`);
  if (consoleErrors.length) process.stderr.write(`run.mjs: console errors:\n${consoleErrors.slice(0, 5).map((c) => `  ${c.text}`).join('\n')}\n`);
  process.exit(1);
}
process.exit(0);

function summary(r) {
  const lines = [];
  lines.push(`result: ${r.runner.result.reason}; run ${r.runner.timing.runMs ?? '?'} ms, total ${r.runner.timing.totalMs} ms`);
  if (!r.state) return lines.join('\n');
  lines.push(`identity ${r.state.localIdentity} in room ${r.state.roomName}, connected at t=${r.state.connectedAt} ms`);
  const th = r.audio.threshold;
  for (const [name, e] of [...Object.entries(r.audio.remote), ...(r.audio.local ? [['local', r.audio.local]] : [])]) {
    const loud = e.frames.filter((f) => f.rms >= th);
    const max = e.frames.reduce((m, f) => Math.max(m, f.rms), 0);
    const st = e.stats.at(-1) ?? {};
    lines.push(`audio ${name === 'local' ? 'local mic' : `from ${e.identity} (${name})`}: ${e.frames.length} frames, ${loud.length} >= ${th}` +
      ` (first t=${loud[0]?.t ?? '-'}, last t=${loud.at(-1)?.t ?? '-'}), max rms ${max.toFixed(4)}` +
      (st.packetsReceived != null ? `, packets ${st.packetsReceived} recv / ${st.packetsLost} lost, concealed ${st.concealedSamples}` : '') +
      (st.packetsSent != null ? `, packets sent ${st.packetsSent}` : ''));
  }
  for (const s of r.textStreams) {
    lines.push(`text t=${s.t} [${s.topic}] from ${s.identity}: ${JSON.stringify(s.text)} ${JSON.stringify(s.attributes)}`);
  }
  for (const a of r.attributes.filter((x) => !x.local)) {
    lines.push(`attributes t=${a.t} ${a.identity}${a.initial ? ' (initial)' : ''}: ${JSON.stringify(a.initial ? a.attributes : a.changed)}`);
  }
  for (const d of r.dataPackets) lines.push(`data t=${d.t} [${d.topic}] from ${d.identity}: ${JSON.stringify(d.text ?? d.base64)}`);
  for (const p of r.candidatePairs) lines.push(`ICE ${p.side}: ${p.local.address}:${p.local.port} (${p.local.candidateType}) -> ${p.remote.address}:${p.remote.port} (${p.remote.candidateType})`);
  if (r.runner.console.length) lines.push(`console: ${r.runner.console.length} messages (${consoleErrors.length} errors)`);
  if (r.runner.pageErrors.length) lines.push(`page errors: ${r.runner.pageErrors.map((e) => e.message).join(' | ')}`);
  if (r.errors.length) lines.push(`harness errors: ${r.errors.map((e) => `${e.where}: ${e.message}`).join(' | ')}`);
  return lines.join('\n');
}
