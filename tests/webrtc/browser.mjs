#!/usr/bin/env node
// Opens the page of `voicebackend serve` in headless Debian Chromium (playwright-core from the
// LiveKit browser harness's node_modules: tests/livekit/browser/setup.sh installs it), with a
// WAV file as the fake microphone, clicks Talk, and waits until the captions show a final
// transcript of the user and a reply of the agent. Saves a screenshot; writes a JSON report.
//
//   node browser.mjs --url http://127.0.0.1:PORT/ --mic speech.wav --screenshot out.png \
//       --report out.json [--timeout-ms 90000] [--chromium /usr/bin/chromium] [--ice-restart]
//
// --ice-restart: once the captions are there, the page restarts ICE on its connection
// (restartIce, a new offer for the same pc_id) and asks again with client-ready: a bot-ready
// must come back over the data channel, carried by the restarted ICE.
//
// Exit status: 0 when both captions appeared; 1 otherwise (the reason on stderr and in the
// report); 2 for bad arguments.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(HERE, '../livekit/browser/package.json'));
const { chromium } = require('playwright-core');

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' }, mic: { type: 'string' }, screenshot: { type: 'string' },
    report: { type: 'string' }, 'timeout-ms': { type: 'string', default: '90000' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'ice-restart': { type: 'boolean', default: false },
  },
});
for (const needed of ['url', 'mic', 'screenshot', 'report']) {
  if (!args[needed]) { process.stderr.write(`browser.mjs: --${needed} is required\n`); process.exit(2); }
}

const report = { console: [], levels: [] };
const finish = (code, why) => {
  report.result = why;
  fs.writeFileSync(args.report, JSON.stringify(report, null, 2));
  if (code) process.stderr.write(`browser.mjs: ${why}\n`);
  process.exit(code);
};

const browser = await chromium.launch({
  executablePath: args.chromium, headless: true, timeout: 60000,
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-extensions',
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${path.resolve(args.mic)}%noloop`,
  ],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => report.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => report.console.push(`pageerror: ${e.message}`));
  await page.goto(args.url);
  await page.click('#talk');
  const deadline = Date.now() + Number(args['timeout-ms']);
  const read = () => page.evaluate(() => ({
    status: document.getElementById('status').dataset.status,
    error: document.getElementById('error').textContent,
    state: document.getElementById('state').textContent,
    level: Number(document.getElementById('level').dataset.level || 0),
    lines: [...document.querySelectorAll('#captions .line')].map((l) => ({
      who: l.dataset.who, final: l.dataset.final === 'true', text: l.textContent,
    })),
    latency: [...document.querySelectorAll('#latency tbody tr')].map(
      (r) => [...r.cells].map((c) => c.textContent)),
  }));
  let seen = await read();
  const done = (s) => s.lines.some((l) => l.who === 'user' && l.final)
    && s.lines.some((l) => l.who === 'agent') && s.latency.length > 0;
  while (!done(seen)) {
    if (seen.status === 'failed') break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 200));
    seen = await read();
    report.levels.push(seen.level);
  }
  if (done(seen) && args['ice-restart']) {
    report.iceRestart = await page.evaluate(async () => {
      const ufrag = (d) => (d.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
      const pc = window.voicebackendPage.connection();
      const status = document.getElementById('status');
      const readyBefore = Number(status.dataset.ready || 0);
      const before = document.getElementById('talk').dataset.pcId;
      const localBefore = ufrag(pc.localDescription);
      const remoteBefore = ufrag(pc.remoteDescription);
      const pcId = await window.voicebackendPage.restartIce();
      const localAfter = ufrag(pc.localDescription);
      const remoteAfter = ufrag(pc.remoteDescription);
      // The transport runs on the new credentials once a pair of the restarted ICE is selected.
      const transport = async () => {
        const stats = await pc.getStats();
        return [...stats.values()].find((s) => s.type === 'transport') || {};
      };
      const t0 = Date.now();
      let now = await transport();
      while (Date.now() - t0 < 10000) {
        now = await transport();
        if (pc.iceConnectionState === 'connected' && now.iceLocalUsernameFragment === localAfter
            && now.iceState === 'connected') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      window.voicebackendPage.clientReady();
      while (Date.now() - t0 < 10000 && Number(status.dataset.ready || 0) <= readyBefore) {
        await new Promise((r) => setTimeout(r, 50));
      }
      return {
        samePcId: pcId === before, localBefore, localAfter, remoteBefore, remoteAfter,
        iceState: pc.iceConnectionState,
        transportUfrag: now.iceLocalUsernameFragment, transportIceState: now.iceState,
        pairChanges: now.selectedCandidatePairChanges,
        readyBefore, readyAfter: Number(status.dataset.ready || 0), ms: Date.now() - t0,
      };
    });
  }
  // Let the agent's state settle and the reply's audio play, then keep a picture of it.
  await new Promise((r) => setTimeout(r, 1500));
  seen = await read();
  Object.assign(report, seen);
  await page.screenshot({ path: args.screenshot, fullPage: true });
  await browser.close();
  if (!done(seen)) finish(1, `captions incomplete (status ${seen.status}, error '${seen.error}')`);
  finish(0, 'ok');
} catch (e) {
  await browser.close().catch(() => {});
  finish(1, String(e && e.stack || e));
}
