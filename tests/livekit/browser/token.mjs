#!/usr/bin/env node
// Mints a LiveKit access token (HS256 JWT) with livekit-server-sdk.
// As a CLI: node token.mjs --api-key devkey --api-secret secret --room R --identity ID
//           [--name N] [--attrs k=v,k2=v2] [--ttl 1h] [--agent]   → prints the JWT
import { AccessToken } from 'livekit-server-sdk';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

export async function mintToken({ apiKey, apiSecret, room, identity, name, attributes, ttl = '1h', agent = false }) {
  if (!apiKey || !apiSecret || !room || !identity) throw new Error('token: api key, api secret, room and identity are required');
  const at = new AccessToken(apiKey, apiSecret, { identity, name, attributes, ttl });
  at.addGrant({
    room, roomJoin: true, canPublish: true, canSubscribe: true, canPublishData: true,
    canUpdateOwnMetadata: true, // needed for localParticipant.setAttributes()
    ...(agent ? { agent: true } : {}),
  });
  return at.toJwt();
}

export function parseKv(s) {
  if (!s) return undefined;
  if (s.trim().startsWith('{')) return JSON.parse(s);
  return Object.fromEntries(s.split(',').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    if (i < 0) throw new Error(`bad k=v pair: ${kv}`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values: v } = parseArgs({
    options: {
      'api-key': { type: 'string', default: process.env.LIVEKIT_API_KEY ?? 'devkey' },
      'api-secret': { type: 'string', default: process.env.LIVEKIT_API_SECRET ?? 'secret' },
      room: { type: 'string' }, identity: { type: 'string' }, name: { type: 'string' },
      attrs: { type: 'string' }, ttl: { type: 'string', default: '1h' }, agent: { type: 'boolean', default: false },
    },
  });
  try {
    console.log(await mintToken({
      apiKey: v['api-key'], apiSecret: v['api-secret'], room: v.room, identity: v.identity,
      name: v.name, attributes: parseKv(v.attrs), ttl: v.ttl, agent: v.agent,
    }));
  } catch (e) {
    console.error(String(e.message ?? e));
    process.exit(2);
  }
}
