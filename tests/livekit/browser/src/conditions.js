// Stop / trigger conditions evaluated over the harness log (window.report).
// Shared by the page bundle (src/harness.js) and by node (run.mjs validates
// --until early; test/conditions.test.mjs unit-tests it).
//
// Grammar (whitespace around operators is optional):
//   expr   := clause ( ('&&' | ' and ') clause )*     all clauses must hold; time = latest
//   clause := atom ( ' after ' atom )*                 "A after B": A counted/matched only from
//                                                     the time B first held (right-associative)
//   atom   := attr:KEY=VALUE[@IDENTITY]  a remote participant's attribute KEY became VALUE
//                                       (an attribute change, or present when it joined)
//           | texts[>=]N | texts[TOPIC]>=N  text streams received (any / given topic)
//           | finals>=N                 text streams with attribute lk.transcription_final=true
//           | data>=N                   data packets received
//           | participants>=N           remote participants present at once
//           | subscribed>=N             remote audio tracks subscribed
//           | audio-ms>=N               N ms of remote audio frames with RMS >= the threshold
//           | quiet-ms>=N               N consecutive ms of remote audio frames below it
//           | connected                 the room connected
//           | ms>=N                     N ms since the harness started
// Counts after `after` are counted from the time the right-hand side first held.
//
// Example: "attr:lk.agent.state=listening after finals>=1"
//          "quiet-ms>=1500 after audio-ms>=300"

const COUNT_ATOMS = new Set([
  'texts', 'finals', 'data', 'participants', 'subscribed', 'audio-ms', 'quiet-ms', 'ms',
]);

export function parseCondition(src) {
  if (typeof src !== 'string' || !src.trim()) throw new Error('empty condition');
  const clauses = src.split(/\s*&&\s*|\s+and\s+/).map((c) => c.trim()).filter(Boolean);
  return {
    src,
    clauses: clauses.map((c) => c.split(/\s+after\s+/).map((a) => parseAtom(a.trim()))),
  };
}

function parseAtom(a) {
  if (a === 'connected') return { kind: 'connected' };
  let m = /^attr:([^=]+)=(.*?)(?:@([^@]+))?$/.exec(a);
  if (m) return { kind: 'attr', key: m[1], value: m[2], identity: m[3] ?? null };
  m = /^([a-z-]+)(?:\[([^\]]+)\])?\s*(>=|=)\s*(\d+)$/.exec(a);
  if (m && COUNT_ATOMS.has(m[1])) {
    if (m[2] && m[1] !== 'texts') throw new Error(`only texts[TOPIC] takes a topic: ${a}`);
    return { kind: m[1], topic: m[2] ?? null, n: Number(m[4]) };
  }
  throw new Error(`cannot parse condition atom "${a}" (see src/conditions.js for the grammar)`);
}

// Earliest harness time (ms) >= since at which the atom holds, or null.
function atomTime(atom, r, since, threshold) {
  const nth = (events, n) => {
    if (n <= 0) return since;
    let k = 0;
    for (const e of events) {
      if (e.t < since) continue;
      if (++k >= n) return e.t;
    }
    return null;
  };
  switch (atom.kind) {
    case 'connected': {
      const e = r.events.find((e) => e.type === 'connected' && e.t >= since) ??
        (r.state.connectedAt != null ? { t: Math.max(r.state.connectedAt, since) } : null);
      return e ? e.t : null;
    }
    case 'ms':
      return r.state.now >= since + atom.n ? since + atom.n : null;
    case 'attr': {
      for (const e of r.attributes) {
        if (e.t < since) continue;
        if (atom.identity && e.identity !== atom.identity) continue;
        if (e.local) continue;
        const src = e.initial ? e.attributes : e.changed;
        if (src && Object.prototype.hasOwnProperty.call(src, atom.key) && src[atom.key] === atom.value) return e.t;
      }
      return null;
    }
    case 'texts':
      return nth(r.textStreams.filter((s) => !atom.topic || s.topic === atom.topic).map((s) => ({ t: s.doneT ?? s.t })), atom.n);
    case 'finals':
      return nth(r.textStreams.filter((s) => s.done && s.attributes?.['lk.transcription_final'] === 'true').map((s) => ({ t: s.doneT })), atom.n);
    case 'data':
      return nth(r.dataPackets, atom.n);
    case 'participants': {
      const e = r.events.find((e) => e.t >= since && typeof e.remoteCount === 'number' && e.remoteCount >= atom.n);
      if (e) return e.t;
      return atom.n <= 0 ? since : null;
    }
    case 'subscribed': {
      const e = r.events.find((e) => e.t >= since && typeof e.subscribedAudio === 'number' && e.subscribedAudio >= atom.n);
      return e ? e.t : atom.n <= 0 ? since : null;
    }
    case 'audio-ms': {
      let acc = 0;
      for (const f of remoteFrames(r)) {
        if (f.t < since) continue;
        if (f.rms >= threshold) { acc += f.ms; if (acc >= atom.n) return f.t; }
      }
      return atom.n <= 0 ? since : null;
    }
    case 'quiet-ms': {
      let run = 0;
      for (const f of remoteFrames(r)) {
        if (f.t < since) continue;
        if (f.rms < threshold) { run += f.ms; if (run >= atom.n) return f.t; } else run = 0;
      }
      return null;
    }
    default:
      throw new Error(`unknown atom ${atom.kind}`);
  }
}

// All remote audio frames of all tracks, in time order.
function remoteFrames(r) {
  const tracks = Object.values(r.audio?.remote ?? {});
  if (tracks.length === 1) return tracks[0].frames;
  return tracks.flatMap((t) => t.frames).sort((a, b) => a.t - b.t);
}

// Returns the harness time at which the whole condition first held, or null.
export function evaluateCondition(cond, report, threshold = 0.01) {
  let latest = 0;
  for (const chain of cond.clauses) {
    // "A after B after C": evaluate from the right.
    let since = 0;
    for (let i = chain.length - 1; i >= 0; i--) {
      const t = atomTime(chain[i], report, since, threshold);
      if (t == null) return null;
      since = t;
    }
    latest = Math.max(latest, since);
  }
  return latest;
}
