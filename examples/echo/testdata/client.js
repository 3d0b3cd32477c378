// A Node client using the ws library, the WebSocket client most used in
// Node. It checks every echo itself and prints one JSON line with the
// result, which echo_test.go reads. A wss:// URL is dialed trusting any
// certificate: the echo's -tls one is self-signed.
const WebSocket = require('ws');
const crypto = require('crypto');

const url = process.argv[2];
const ws = new WebSocket(url, { rejectUnauthorized: false });
const big = 'x'.repeat(100000);
// 1 MiB, the hub's default limit, of bytes deflate cannot shrink: over
// wss:// it is 64 full TLS records each way.
const mib = crypto.randomBytes(1 << 20);
// Compressed with the context of the message before it (permessage-deflate
// with client context takeover, as ws offers by default): its x's refer
// back into the previous message, within the 512-byte window the hub asks
// for.
const after = 'x'.repeat(300) + 'y'.repeat(3000) + JSON.stringify({ n: 1 });
const expected = [
  ['text', 'hello from node'],
  ['binary', Buffer.from([0, 1, 2, 254, 255]).toString('hex')],
  ['text', 'fragmented message'],
  ['text', big],
  ['text', after],
  ['binary', mib.toString('hex')],
];
const got = [];
const fail = (why) => { console.log(JSON.stringify({ ok: false, why })); process.exit(1); };
setTimeout(() => fail('timed out'), 20000);

ws.on('open', () => {
  ws.send('hello from node');
  ws.send(Buffer.from([0, 1, 2, 254, 255]));
  ws.send('fragmented ', { fin: false });
  ws.send('message', { fin: true });
  ws.send(big);
  ws.send(after);
  ws.send(mib, { compress: false }); // deflated, it would grow past the limit
  ws.ping('are you there');
});
let pong = false;
ws.on('pong', (data) => { pong = data.toString() === 'are you there'; });
ws.on('message', (data, isBinary) => {
  got.push([isBinary ? 'binary' : 'text', isBinary ? data.toString('hex') : data.toString()]);
  if (got.length === expected.length) {
    for (let i = 0; i < expected.length; i++) {
      if (got[i][0] !== expected[i][0] || got[i][1] !== expected[i][1]) {
        fail(`message ${i}: got ${got[i][0]} of ${got[i][1].length} chars`);
      }
    }
    ws.close(4000, 'node done');
  }
});
ws.on('close', (code, reason) => {
  const deflate = (ws.extensions || '').includes('permessage-deflate');
  console.log(JSON.stringify({ ok: pong && deflate && code === 4000, code, reason: reason.toString(), pong, deflate, messages: got.length }));
  process.exit(0);
});
ws.on('error', (e) => fail(e.message));
