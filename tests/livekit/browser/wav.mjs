// Minimal RIFF/WAVE reader/writer for the fake microphone: pads a PCM WAV with silence.
import fs from 'node:fs';

export function readWav(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`${file}: not a RIFF/WAVE file`);
  }
  let fmt = null;
  let data = null;
  let off = 12;
  while (off + 8 <= buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    let size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    // Writers that stream to a pipe leave 0xFFFFFFFF-ish sizes: clamp to the file.
    if (body + size > buf.length) size = buf.length - body;
    if (id === 'fmt ') {
      fmt = {
        format: buf.readUInt16LE(body),
        channels: buf.readUInt16LE(body + 2),
        sampleRate: buf.readUInt32LE(body + 4),
        bitsPerSample: buf.readUInt16LE(body + 14),
        raw: buf.subarray(body, body + size),
      };
    } else if (id === 'data') {
      data = buf.subarray(body, body + size);
    }
    off = body + size + (size & 1);
  }
  if (!fmt || !data) throw new Error(`${file}: no fmt or data chunk`);
  // 1 = PCM, 3 = IEEE float, 0xFFFE = extensible (Chromium reads these three)
  if (![1, 3, 0xfffe].includes(fmt.format)) throw new Error(`${file}: unsupported WAV format ${fmt.format}`);
  const blockAlign = fmt.channels * (fmt.bitsPerSample / 8);
  return { ...fmt, blockAlign, data, durationMs: (data.length / blockAlign / fmt.sampleRate) * 1000 };
}

export function writeWav(file, wav, data) {
  const fmtBody = wav.raw;
  const header = Buffer.alloc(12 + 8 + fmtBody.length + 8);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(header.length - 8 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(fmtBody.length, 16);
  fmtBody.copy(header, 20);
  const d = 20 + fmtBody.length;
  header.write('data', d, 'ascii');
  header.writeUInt32LE(data.length, d + 4);
  fs.writeFileSync(file, Buffer.concat([header, data]));
}

// Pads with digital silence (8-bit PCM is unsigned: silence is 0x80).
export function padWav(inFile, outFile, startMs, endMs) {
  const wav = readWav(inFile);
  const silence = (ms) => {
    const frames = Math.round((ms / 1000) * wav.sampleRate);
    const b = Buffer.alloc(frames * wav.blockAlign, wav.bitsPerSample === 8 && wav.format === 1 ? 0x80 : 0);
    return b;
  };
  const data = Buffer.concat([silence(startMs), wav.data, silence(endMs)]);
  writeWav(outFile, wav, data);
  return {
    sampleRate: wav.sampleRate, channels: wav.channels, bitsPerSample: wav.bitsPerSample,
    speechMs: Math.round(wav.durationMs), padStartMs: startMs, padEndMs: endMs,
    totalMs: Math.round((data.length / wav.blockAlign / wav.sampleRate) * 1000),
  };
}
