// node --test test/   (no browser needed)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCondition, evaluateCondition } from '../src/conditions.js';

const frames = (spec) => spec.map(([t, rms]) => ({ t, rms, peak: rms, ms: 20 }));
const report = {
  state: { now: 5000, connectedAt: 100 },
  events: [
    { t: 100, type: 'connected', remoteCount: 0 },
    { t: 300, type: 'participant-connected', remoteCount: 1 },
    { t: 400, type: 'track-subscribed', subscribedAudio: 1 },
  ],
  attributes: [
    { t: 300, identity: 'agent', local: false, initial: true, attributes: { 'lk.agent.state': 'initializing' } },
    { t: 500, identity: 'agent', local: false, changed: { 'lk.agent.state': 'listening' } },
    { t: 900, identity: 'agent', local: false, changed: { 'lk.agent.state': 'thinking' } },
    { t: 1500, identity: 'agent', local: false, changed: { 'lk.agent.state': 'listening' } },
    { t: 1600, identity: 'me', local: true, changed: { 'lk.agent.state': 'odd' } },
  ],
  textStreams: [
    { t: 700, doneT: 800, done: true, topic: 'lk.transcription', attributes: { 'lk.transcription_final': 'false' } },
    { t: 1000, doneT: 1100, done: true, topic: 'lk.transcription', attributes: { 'lk.transcription_final': 'true' } },
    { t: 1200, doneT: 1250, done: true, topic: 'lk.chat', attributes: {} },
  ],
  dataPackets: [{ t: 1300 }],
  audio: {
    remote: {
      TR_1: {
        frames: frames([[1000, 0.2], [1020, 0.2], [1040, 0.001], [1060, 0.2], [1080, 0.002], [1100, 0.002], [1120, 0.002]]),
      },
    },
  },
};
const at = (src) => evaluateCondition(parseCondition(src), report, 0.01);

test('atoms', () => {
  assert.equal(at('connected'), 100);
  assert.equal(at('participants>=1'), 300);
  assert.equal(at('subscribed>=1'), 400);
  assert.equal(at('attr:lk.agent.state=initializing'), 300);
  assert.equal(at('attr:lk.agent.state=listening'), 500);
  assert.equal(at('attr:lk.agent.state=listening@agent'), 500);
  assert.equal(at('attr:lk.agent.state=listening@other'), null);
  assert.equal(at('attr:lk.agent.state=odd'), null, 'local changes do not count');
  assert.equal(at('texts>=2'), 1100);
  assert.equal(at('texts[lk.chat]>=1'), 1250);
  assert.equal(at('finals>=1'), 1100);
  assert.equal(at('data>=1'), 1300);
  assert.equal(at('audio-ms>=60'), 1060);
  assert.equal(at('quiet-ms>=60'), 1120);
  assert.equal(at('ms>=1000'), 1000);
  assert.equal(at('ms>=9000'), null);
});

test('after and &&', () => {
  assert.equal(at('attr:lk.agent.state=listening after finals>=1'), 1500);
  assert.equal(at('attr:lk.agent.state=listening after texts>=1'), 1500);
  assert.equal(at('texts>=1 after attr:lk.agent.state=thinking'), 1100);
  assert.equal(at('attr:lk.agent.state=listening after texts>=1 after attr:lk.agent.state=thinking'), 1500);
  assert.equal(at('attr:lk.agent.state=thinking after finals>=1'), null);
  assert.equal(at('texts>=1 && data>=1'), 1300);
  assert.equal(at('texts>=1 and audio-ms>=20'), 1000);
  assert.equal(at('texts>=1 && attr:x=y'), null);
});

test('parse errors', () => {
  assert.throws(() => parseCondition('bogus>=1'));
  assert.throws(() => parseCondition('finals[x]>=1'));
  assert.throws(() => parseCondition(''));
});
