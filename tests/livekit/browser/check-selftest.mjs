#!/usr/bin/env node
// Checks the reports of selftest.sh: node check-selftest.mjs a.json b.json [--loss PCT]
import fs from 'node:fs';

const [aFile, bFile, ...rest] = process.argv.slice(2);
const loss = rest[0] === '--loss' ? Number(rest[1]) : 0;
const A = JSON.parse(fs.readFileSync(aFile, 'utf8'));
const B = JSON.parse(fs.readFileSync(bFile, 'utf8'));
let passed = 0;
let failed = 0;
const check = (name, ok, detail = '') => {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` — ${detail}` : ''}`);
};

check('page A finished ok', A.runner?.result?.ok, A.runner?.result?.reason);
check('page B finished ok (its --until held)', B.runner?.result?.ok, B.runner?.result?.reason);

// Audio: B hears A while A's fake mic plays speech.
const th = B.audio?.threshold ?? 0.01;
const remote = Object.values(B.audio?.remote ?? {}).find((e) => e.identity === 'speaker');
check('B subscribed to the speaker\'s audio track', !!remote, remote ? `${remote.trackSid} at t=${remote.subscribedAt}` : '');
const loudB = remote ? remote.frames.filter((f) => f.rms >= th) : [];
const maxB = remote ? Math.max(0, ...remote.frames.map((f) => f.rms)) : 0;
check('B heard >= 600 ms of audio with energy from the speaker', loudB.length * (B.audio?.frameMs ?? 20) >= 600,
  `${loudB.length} frames >= ${th}, max rms ${maxB.toFixed(3)}`);
const localA = A.audio?.local;
const loudA = localA ? localA.frames.filter((f) => f.rms >= th) : [];
if (loudA.length && loudB.length) {
  // Align by wall clock: epoch = meta.timeOrigin + t
  const aStart = A.meta.timeOrigin + loudA[0].t;
  const aEnd = A.meta.timeOrigin + loudA.at(-1).t;
  const bStart = B.meta.timeOrigin + loudB[0].t;
  const bEnd = B.meta.timeOrigin + loudB.at(-1).t;
  const lag = Math.round(bStart - aStart);
  check('B\'s audio starts 0-1000 ms after A\'s mic speech starts', lag >= -50 && lag <= 1000, `mouth-to-ear ~${lag} ms`);
  check('B\'s loud span matches A\'s speech length (±400 ms)', Math.abs((bEnd - bStart) - (aEnd - aStart)) <= 400,
    `A ${Math.round(aEnd - aStart)} ms, B ${Math.round(bEnd - bStart)} ms`);
} else {
  check('A\'s local mic frames show speech', loudA.length > 0, `${loudA.length} loud frames`);
}
const st = remote?.stats?.at(-1);
check('B\'s inbound-rtp stats count received packets', (st?.packetsReceived ?? 0) > 0,
  st ? `received ${st.packetsReceived}, lost ${st.packetsLost}, concealed ${st.concealedSamples}, nack ${st.nackCount}, codec ${st.codec}` : 'no stats');

// Text stream with the transcription attributes
const ts = (B.textStreams ?? []).find((s) => s.topic === 'lk.transcription');
check('B received the text stream on lk.transcription from speaker',
  ts && ts.identity === 'speaker' && ts.text === 'hello there how are you' && ts.done, ts ? JSON.stringify(ts.text) : 'none');
check('with its attributes', ts && ts.attributes['lk.segment_id'] === 'SG_1' &&
  ts.attributes['lk.transcribed_track_id'] === 'TR_test' && ts.attributes['lk.transcription_final'] === 'true',
ts ? JSON.stringify(ts.attributes) : '');

// Data packet
const dp = (B.dataPackets ?? []).find((d) => d.topic === 'harness');
check('B received the data packet', dp && dp.text === 'ping' && dp.identity === 'speaker', dp ? JSON.stringify(dp) : 'none');

// Participant attribute after the text stream
const attr = (B.attributes ?? []).find((a) => !a.local && a.identity === 'speaker' && a.changed?.['lk.agent.state'] === 'listening');
check('B saw lk.agent.state=listening from speaker', !!attr, attr ? `t=${attr.t}` : '');
check('... after the text stream', attr && ts && attr.t > ts.t, attr && ts ? `text t=${ts.t}, attr t=${attr.t}` : '');

const pairs = [...(A.candidatePairs ?? []), ...(B.candidatePairs ?? [])];
check('all selected ICE pairs are on 127.0.0.1', pairs.length > 0 && pairs.every((p) => p.local.address === '127.0.0.1' && p.remote.address === '127.0.0.1'),
  pairs.map((p) => `${p.side} ${p.local.address}:${p.local.port}->${p.remote.address}:${p.remote.port}`).join(', '));
if (loss) console.log(`(run with --loss ${loss}: B lost ${st?.packetsLost ?? '?'} of ${(st?.packetsReceived ?? 0) + (st?.packetsLost ?? 0)} packets after retransmission)`);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
