// Browser side of the LiveKit test harness. Bundled by build.mjs into dist/harness.js
// and loaded by index.html. Everything it sees is collected in window.report (JSON-able).
//
// Query string (all optional except url and token):
//   url, token          LiveKit server URL (ws://127.0.0.1:PORT) and access token
//   mic=1               publish the microphone (Chromium's fake device; a WAV with the
//                       runner's --mic). micWhen=COND: publish when COND holds (default
//                       "connected"); the fake WAV starts playing when the mic is opened.
//   dtx=0|1, red=0|1    publish options for the mic (livekit-client defaults: both on)
//   textTopics=a,b      topics to register text stream handlers for
//                       (default lk.transcription,lk.chat)
//   until=COND          condition (src/conditions.js) that marks the run as finished
//   threshold=0.01      RMS (full scale 1.0) above which a 20 ms frame counts as audio
//   frameMs=20          audio level frame length; statsMs=250 getStats period
//   actions=JSON        [{type, when?, delayMs?, ...}] with type one of
//                       sendText{text,topic,attributes} setAttr{attributes}
//                       sendData{text,topic,reliable} mic{enabled} disconnect
//   self-test shortcuts, turned into actions in this order (when = actionWhen,
//   default "participants>=1", each actionDelayMs (default 500) after the previous):
//     sendText=TEXT [sendTextTopic=lk.transcription] [sendTextAttrs=JSON]
//     sendData=TEXT [sendDataTopic=]
//     setAttr=JSON or k=v,k2=v2
//   logLevel=warn       livekit-client log level
import {
  Room, RoomEvent, Track, ConnectionState, setLogLevel, version as lkVersion,
} from 'livekit-client';
import { parseCondition, evaluateCondition } from './conditions.js';

const q = new URLSearchParams(location.search);
const T0 = performance.now();
const now = () => Math.round((performance.now() - T0) * 10) / 10;
const num = (k, d) => (q.has(k) ? Number(q.get(k)) : d);
const bool = (k, d) => (q.has(k) ? !['0', 'false', 'no', 'off'].includes(q.get(k)) : d);

const report = {
  meta: {
    harness: 1,
    livekitClient: lkVersion,
    userAgent: navigator.userAgent,
    // epoch ms of t = 0: wall clock of any event = timeOrigin + t
    timeOrigin: Math.round((performance.timeOrigin + T0) * 10) / 10,
    url: q.get('url'),
    params: Object.fromEntries([...q.entries()].filter(([k]) => k !== 'token')),
  },
  state: {
    now: 0, connectionState: 'new', connectedAt: null, untilMetAt: null, fatal: null,
    localIdentity: null, localSid: null, roomName: null,
  },
  events: [],          // {t, type, ...}
  textStreams: [],     // {t, id, topic, identity, attributes, chunks:[{t,text}], text, done, doneT}
  attributes: [],      // {t, identity, local, initial?, changed?, attributes}
  dataPackets: [],     // {t, identity, topic, kind, size, text|base64}
  transcriptionSegments: [], // legacy RoomEvent.TranscriptionReceived
  actions: [],         // {t, type, ok, error?}
  audio: {
    frameMs: num('frameMs', 20),
    threshold: num('threshold', 0.01),
    remote: {},        // trackSid -> {identity, trackSid, subscribedAt, frames:[{t,rms,peak,ms}], stats:[]}
    local: null,       // same shape for our own mic
  },
  candidatePairs: [],  // selected ICE pair as seen by getStats, on change
  errors: [],          // page-side errors (the runner adds console/pageerror too)
};
window.report = report;

const log = (type, extra = {}) => {
  const e = { t: now(), type, ...extra };
  report.events.push(e);
  return e;
};
const err = (where, e) => {
  report.errors.push({ t: now(), where, message: String(e?.message ?? e), stack: e?.stack ?? null });
};
window.addEventListener('error', (e) => err('window.error', e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => err('unhandledrejection', e.reason));

setLogLevel(q.get('logLevel') || 'warn');

function parseKv(s) {
  if (!s) return {};
  const t = s.trim();
  if (t.startsWith('{')) return JSON.parse(t);
  return Object.fromEntries(t.split(',').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    if (i < 0) throw new Error(`bad k=v pair: ${kv}`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
}

// ---------- audio levels (AudioWorklet: exact, gap-free 20 ms frames) ----------
const WORKLET = `
class Level extends AudioWorkletProcessor {
  constructor(o) { super(); this.n = Math.round(sampleRate * o.processorOptions.frameMs / 1000); this.k = 0; this.s = 0; this.p = 0; }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const v = ch[i]; this.s += v * v; const a = v < 0 ? -v : v; if (a > this.p) this.p = a;
      if (++this.k >= this.n) {
        this.port.postMessage({ rms: Math.sqrt(this.s / this.k), peak: this.p, at: currentTime });
        this.k = 0; this.s = 0; this.p = 0;
      }
    }
    return true;
  }
}
registerProcessor('level', Level);`;

let audioCtx = null;
let workletReady = null;
function ctx() {
  if (!audioCtx) {
    audioCtx = new AudioContext({ latencyHint: 'interactive' });
    const url = URL.createObjectURL(new Blob([WORKLET], { type: 'text/javascript' }));
    workletReady = audioCtx.audioWorklet.addModule(url);
    log('audio-context', { sampleRate: audioCtx.sampleRate, state: audioCtx.state });
    audioCtx.onstatechange = () => log('audio-context-state', { state: audioCtx.state });
  }
  return audioCtx;
}

async function meter(mediaStreamTrack, entry) {
  const c = ctx();
  await workletReady;
  if (c.state !== 'running') await c.resume().catch((e) => err('audioCtx.resume', e));
  const src = c.createMediaStreamSource(new MediaStream([mediaStreamTrack]));
  const node = new AudioWorkletNode(c, 'level', {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { frameMs: report.audio.frameMs },
  });
  const mute = c.createGain();
  mute.gain.value = 0;
  src.connect(node).connect(mute).connect(c.destination);
  node.port.onmessage = (m) => {
    entry.frames.push({
      t: now(),
      rms: Math.round(m.data.rms * 1e5) / 1e5,
      peak: Math.round(m.data.peak * 1e4) / 1e4,
      ms: report.audio.frameMs,
    });
  };
  entry.nodes = { src, node, mute }; // kept out of JSON below
}

// ---------- getStats ----------
const pick = (o, keys) => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
const INBOUND = ['packetsReceived', 'packetsLost', 'bytesReceived', 'jitter', 'audioLevel',
  'totalAudioEnergy', 'totalSamplesDuration', 'totalSamplesReceived', 'concealedSamples',
  'silentConcealedSamples', 'concealmentEvents', 'insertedSamplesForDeceleration',
  'removedSamplesForAcceleration', 'fecPacketsReceived', 'fecPacketsDiscarded', 'nackCount',
  'packetsDiscarded', 'jitterBufferDelay', 'jitterBufferEmittedCount', 'lastPacketReceivedTimestamp'];
const OUTBOUND = ['packetsSent', 'bytesSent', 'retransmittedPacketsSent', 'retransmittedBytesSent',
  'nackCount', 'targetBitrate'];

let lastPairKey = null;
function notePair(stats, side) {
  let transport = null;
  stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) transport = s; });
  if (!transport) return;
  const pair = stats.get(transport.selectedCandidatePairId);
  if (!pair) return;
  const l = stats.get(pair.localCandidateId) ?? {};
  const r = stats.get(pair.remoteCandidateId) ?? {};
  const key = `${side}|${l.address}:${l.port}|${r.address}:${r.port}`;
  if (key === lastPairKey) return;
  lastPairKey = key;
  report.candidatePairs.push({
    t: now(), side,
    local: pick(l, ['address', 'port', 'protocol', 'candidateType', 'networkType']),
    remote: pick(r, ['address', 'port', 'protocol', 'candidateType']),
    state: pair.state, currentRoundTripTime: pair.currentRoundTripTime,
  });
}

async function pollStats() {
  for (const entry of Object.values(report.audio.remote)) {
    const track = tracks.get(entry.trackSid);
    const receiver = track?.receiver;
    if (!receiver) continue;
    try {
      const stats = await receiver.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          const codec = s.codecId ? stats.get(s.codecId) : null;
          entry.stats.push({ t: now(), ...pick(s, INBOUND), codec: codec?.mimeType });
        }
      });
      notePair(stats, 'subscriber');
    } catch (e) { log('stats-error', { side: 'receiver', trackSid: entry.trackSid, message: String(e?.message ?? e) }); }
  }
  const lt = report.audio.local && localTrack;
  if (lt?.sender) {
    try {
      const stats = await lt.sender.getStats();
      stats.forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'audio') report.audio.local.stats.push({ t: now(), ...pick(s, OUTBOUND) });
      });
      notePair(stats, 'publisher');
    } catch (e) { log('stats-error', { side: 'sender', message: String(e?.message ?? e) }); }
  }
}

// ---------- room ----------
const room = new Room({
  adaptiveStream: false,
  dynacast: false,
  audioCaptureDefaults: {
    autoGainControl: false, echoCancellation: false, noiseSuppression: false, channelCount: 1,
  },
});
const tracks = new Map(); // trackSid -> RemoteAudioTrack
let localTrack = null;
window.harness = { room, report };

const remoteCount = () => room.remoteParticipants.size;
const subscribedAudio = () => tracks.size;

function noteInitialAttributes(p) {
  report.attributes.push({ t: now(), identity: p.identity, local: false, initial: true, attributes: { ...p.attributes } });
}

room
  .on(RoomEvent.ConnectionStateChanged, (s) => { report.state.connectionState = s; log('connection-state', { state: s }); })
  .on(RoomEvent.SignalConnected, () => log('signal-connected'))
  .on(RoomEvent.Reconnecting, () => log('reconnecting'))
  .on(RoomEvent.Reconnected, () => log('reconnected'))
  .on(RoomEvent.Disconnected, (reason) => log('disconnected', { reason }))
  .on(RoomEvent.MediaDevicesError, (e) => { err('MediaDevicesError', e); log('media-devices-error', { message: String(e?.message ?? e) }); })
  .on(RoomEvent.AudioPlaybackStatusChanged, () => log('audio-playback', { canPlayback: room.canPlaybackAudio }))
  .on(RoomEvent.ParticipantConnected, (p) => {
    log('participant-connected', { identity: p.identity, sid: p.sid, kind: p.kind, remoteCount: remoteCount() });
    noteInitialAttributes(p);
  })
  .on(RoomEvent.ParticipantDisconnected, (p) => log('participant-disconnected', { identity: p.identity, remoteCount: remoteCount() }))
  .on(RoomEvent.ParticipantAttributesChanged, (changed, p) => {
    const local = p === room.localParticipant;
    report.attributes.push({ t: now(), identity: p.identity, local, changed: { ...changed }, attributes: { ...p.attributes } });
  })
  .on(RoomEvent.TrackPublished, (pub, p) => log('track-published', { identity: p.identity, trackSid: pub.trackSid, kind: pub.kind, source: pub.source }))
  .on(RoomEvent.TrackSubscribed, (track, pub, p) => {
    if (track.kind !== Track.Kind.Audio) { log('track-subscribed', { identity: p.identity, trackSid: pub.trackSid, kind: track.kind }); return; }
    tracks.set(pub.trackSid, track);
    const el = track.attach();
    el.id = `audio-${pub.trackSid}`;
    document.body.appendChild(el);
    const entry = { identity: p.identity, trackSid: pub.trackSid, source: pub.source, subscribedAt: now(), frames: [], stats: [] };
    report.audio.remote[pub.trackSid] = entry;
    log('track-subscribed', { identity: p.identity, trackSid: pub.trackSid, kind: track.kind, subscribedAudio: subscribedAudio() });
    meter(track.mediaStreamTrack, entry).catch((e) => err('meter(remote)', e));
  })
  .on(RoomEvent.TrackUnsubscribed, (track, pub, p) => {
    if (tracks.delete(pub.trackSid)) track.detach();
    log('track-unsubscribed', { identity: p.identity, trackSid: pub.trackSid, subscribedAudio: subscribedAudio() });
  })
  .on(RoomEvent.TrackSubscriptionFailed, (sid, p, e) => { log('track-subscription-failed', { trackSid: sid, identity: p?.identity, error: String(e) }); })
  .on(RoomEvent.TrackMuted, (pub, p) => log('track-muted', { identity: p.identity, trackSid: pub.trackSid }))
  .on(RoomEvent.TrackUnmuted, (pub, p) => log('track-unmuted', { identity: p.identity, trackSid: pub.trackSid }))
  .on(RoomEvent.LocalTrackPublished, (pub) => log('local-track-published', { trackSid: pub.trackSid, kind: pub.kind, source: pub.source }))
  .on(RoomEvent.ActiveSpeakersChanged, (ps) => log('active-speakers', { identities: ps.map((p) => p.identity) }))
  .on(RoomEvent.DataReceived, (payload, p, kind, topic) => {
    const e = { t: now(), identity: p?.identity ?? null, topic: topic ?? null, kind, size: payload.byteLength };
    try { e.text = new TextDecoder('utf-8', { fatal: true }).decode(payload); } catch {
      if (payload.byteLength <= 4096) e.base64 = btoa(String.fromCharCode(...payload));
    }
    report.dataPackets.push(e);
  })
  .on(RoomEvent.TranscriptionReceived, (segments, p, pub) => {
    report.transcriptionSegments.push({
      t: now(), identity: p?.identity ?? null, trackSid: pub?.trackSid ?? null,
      segments: segments.map((s) => ({ id: s.id, text: s.text, final: s.final, startTime: s.startTime, endTime: s.endTime })),
    });
  });

const topics = (q.get('textTopics') ?? 'lk.transcription,lk.chat').split(',').map((s) => s.trim()).filter(Boolean);
for (const topic of topics) {
  room.registerTextStreamHandler(topic, async (reader, { identity }) => {
    const info = reader.info;
    const entry = {
      t: now(), id: info.id, topic: info.topic, identity, attributes: { ...(info.attributes ?? {}) },
      mimeType: info.mimeType, size: info.size ?? null, streamTimestamp: info.timestamp,
      chunks: [], text: '', done: false, doneT: null,
    };
    report.textStreams.push(entry);
    try {
      for await (const chunk of reader) {
        entry.chunks.push({ t: now(), text: chunk });
        entry.text += chunk;
      }
      entry.done = true;
    } catch (e) {
      entry.error = String(e?.message ?? e);
    }
    entry.doneT = now();
  });
}

// ---------- actions, mic, until ----------
const actions = [];
function addAction(a) { actions.push({ ...a, cond: parseCondition(a.when ?? 'connected'), state: 'pending' }); }
try {
  if (q.get('actions')) for (const a of JSON.parse(q.get('actions'))) addAction(a);
  const when = q.get('actionWhen') ?? 'participants>=1';
  const step = num('actionDelayMs', 500);
  let delay = step;
  if (q.has('sendText')) {
    addAction({ type: 'sendText', when, delayMs: delay, text: q.get('sendText'), topic: q.get('sendTextTopic') ?? 'lk.transcription', attributes: parseKv(q.get('sendTextAttrs')) });
    delay += step;
  }
  if (q.has('sendData')) {
    addAction({ type: 'sendData', when, delayMs: delay, text: q.get('sendData'), topic: q.get('sendDataTopic') ?? undefined });
    delay += step;
  }
  if (q.has('setAttr')) addAction({ type: 'setAttr', when, delayMs: delay, attributes: parseKv(q.get('setAttr')) });
} catch (e) {
  report.state.fatal = `bad action parameters: ${e.message}`;
}

async function runAction(a) {
  const rec = { t: now(), type: a.type, ok: false };
  report.actions.push(rec);
  const lp = room.localParticipant;
  try {
    switch (a.type) {
      case 'sendText': {
        const info = await lp.sendText(a.text, { topic: a.topic ?? 'lk.transcription', attributes: a.attributes ?? {} });
        rec.streamId = info?.id;
        break;
      }
      case 'setAttr': await lp.setAttributes(a.attributes ?? {}); break;
      case 'sendData':
        await lp.publishData(new TextEncoder().encode(a.text ?? ''), { reliable: a.reliable ?? true, topic: a.topic });
        break;
      case 'mic': await setMic(a.enabled !== false); break;
      case 'disconnect': await room.disconnect(); break;
      default: throw new Error(`unknown action type ${a.type}`);
    }
    rec.ok = true;
  } catch (e) {
    rec.error = String(e?.message ?? e);
    err(`action ${a.type}`, e);
  }
  rec.doneT = now();
}

async function setMic(enabled) {
  const t = now();
  const pub = await room.localParticipant.setMicrophoneEnabled(enabled, undefined, {
    dtx: bool('dtx', true), red: bool('red', true),
  });
  log(enabled ? 'mic-published' : 'mic-unpublished', { requestedAt: t, trackSid: pub?.trackSid });
  if (enabled && pub?.track && !report.audio.local) {
    localTrack = pub.track;
    report.audio.local = { identity: room.localParticipant.identity, trackSid: pub.trackSid, subscribedAt: now(), frames: [], stats: [] };
    meter(pub.track.mediaStreamTrack, report.audio.local).catch((e) => err('meter(local)', e));
  }
}

const until = q.get('until') ? (() => {
  try { return parseCondition(q.get('until')); } catch (e) { report.state.fatal = `bad until: ${e.message}`; return null; }
})() : null;
const micCond = bool('mic', false) ? parseCondition(q.get('micWhen') ?? 'connected') : null;
let micState = micCond ? 'pending' : 'off';

function tick() {
  report.state.now = now();
  const threshold = report.audio.threshold;
  if (report.state.connectedAt == null) return;
  try {
    if (micState === 'pending' && evaluateCondition(micCond, report, threshold) != null) {
      micState = 'opening';
      setMic(true).then(() => { micState = 'on'; }, (e) => { micState = 'failed'; err('setMicrophoneEnabled', e); report.state.fatal = `microphone: ${e?.message ?? e}`; });
    }
    for (const a of actions) {
      if (a.state !== 'pending') continue;
      const t = evaluateCondition(a.cond, report, threshold);
      if (t == null) continue;
      a.state = 'scheduled';
      setTimeout(() => runAction(a).finally(() => { a.state = 'done'; }), Math.max(0, a.delayMs ?? 0));
    }
    if (until && report.state.untilMetAt == null) {
      const t = evaluateCondition(until, report, threshold);
      if (t != null) { report.state.untilMetAt = t; log('until-met', { at: t, condition: until.src }); }
    }
  } catch (e) {
    err('tick', e);
  }
}

// Small status object for the runner's polling (report itself can be large).
window.harnessStatus = () => ({
  now: now(),
  connectionState: report.state.connectionState,
  connectedAt: report.state.connectedAt,
  untilMetAt: report.state.untilMetAt,
  fatal: report.state.fatal,
  errors: report.errors.length,
  texts: report.textStreams.length,
  frames: Object.values(report.audio.remote).reduce((n, e) => n + e.frames.length, 0),
  actionsPending: actions.filter((a) => a.state !== 'done').length,
});
window.harnessReportJson = () => JSON.stringify(report, (k, v) => (k === 'nodes' ? undefined : v));
window.harnessDisconnect = async () => { await room.disconnect(); };

async function main() {
  const url = q.get('url');
  const token = q.get('token');
  if (!url || !token) { report.state.fatal = 'url and token query parameters are required'; return; }
  if (report.state.fatal) return;
  ctx();
  setInterval(tick, 50);
  setInterval(() => { pollStats(); }, num('statsMs', 250));
  log('connecting', { url });
  try {
    await room.connect(url, token, { autoSubscribe: true });
  } catch (e) {
    report.state.fatal = `connect failed: ${e?.message ?? e}`;
    err('room.connect', e);
    return;
  }
  report.state.connectedAt = now();
  report.state.localIdentity = room.localParticipant.identity;
  report.state.localSid = room.localParticipant.sid;
  report.state.roomName = room.name;
  log('connected', { identity: room.localParticipant.identity, room: room.name, remoteCount: remoteCount(), serverVersion: room.serverInfo?.version });
  for (const p of room.remoteParticipants.values()) noteInitialAttributes(p);
  tick();
}
main();
