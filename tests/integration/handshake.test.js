'use strict';
// Tests for the WebSocket upgrade at /app/{key} and /up through nginx.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, httpRequest, wsUrl, SLOW } = require('./lib/harness');
const { RawWs, OP, buildFrame, acceptFor, rawHttp, connectSocket } = require('./lib/rawws');
const { establishedFrame, PONG, SOCKET_ID_RE } = require('./lib/clients');

let srv;

before(async () => {
    srv = await startServer();
});

after(async () => {
    await srv.stop();
});

function appPath() {
    return `/app/${srv.key}?protocol=7&client=js&version=8.6.0&flash=false`;
}

function upgradeRequest(method, path, headers) {
    let r = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\n`;
    for (const [k, v] of Object.entries(headers)) {
        if (v !== null) {
            r += `${k}: ${v}\r\n`;
        }
    }
    return `${r}\r\n`;
}

const GOOD = {
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
};

test('/up through nginx answers 200 {"health":"OK"}', async () => {
    const r = await httpRequest(srv.port, 'GET', '/up');
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(r.json, { health: 'OK' }, r.body);
});

test('a valid upgrade gets 101 with Upgrade, Connection and the RFC 6455 Sec-WebSocket-Accept', async () => {
    const ws = await RawWs.connect(srv.port, appPath(), { key: 'dGhlIHNhbXBsZSBub25jZQ==' });
    srv.track(ws);
    const r = ws.response;
    assert.equal(r.statusLine, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(r.headers.upgrade.toLowerCase(), 'websocket');
    assert.equal(r.headers.connection.toLowerCase(), 'upgrade');
    /* the RFC 6455 section 1.3 example */
    assert.equal(r.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(r.headers['sec-websocket-accept'], acceptFor('dGhlIHNhbXBsZSBub25jZQ=='));
    const f = await ws.next();
    assert.equal(f.opcode, OP.TEXT);
    const sid = JSON.parse(JSON.parse(f.text).data).socket_id;
    assert.match(sid, SOCKET_ID_RE);
    assert.equal(f.text, establishedFrame(sid));
    ws.close();
});

test('upgrade headers are matched case-insensitively and Connection may be a token list', async () => {
    for (const h of [
        { Upgrade: 'WebSocket', Connection: 'upgrade' },
        { Upgrade: 'websocket', Connection: 'keep-alive, Upgrade' },
        { Upgrade: 'WEBSOCKET', Connection: 'Keep-Alive,UPGRADE' },
    ]) {
        const ws = await RawWs.connect(srv.port, appPath(), { headers: h });
        srv.track(ws);
        assert.equal(ws.response.status, 101, JSON.stringify(h));
        assert.equal(ws.response.headers['sec-websocket-accept'], ws.expectedAccept);
        ws.close();
    }
});

test('a handshake written one byte at a time still upgrades', async () => {
    const ws = await RawWs.connect(srv.port, appPath(), { splitHandshake: true });
    srv.track(ws);
    assert.equal(ws.response.status, 101);
    await ws.next();
    ws.close();
});

const BAD_400 = [
    ['no Upgrade header', { Upgrade: null }],
    ['Upgrade: h2c', { Upgrade: 'h2c' }],
    ['no Connection header', { Connection: null }],
    ['Connection without the upgrade token', { Connection: 'keep-alive' }],
    ['no Sec-WebSocket-Key', { 'Sec-WebSocket-Key': null }],
    ['Sec-WebSocket-Key that is not 16 base64 bytes', { 'Sec-WebSocket-Key': 'abc' }],
    ['Sec-WebSocket-Key of 20 bytes', { 'Sec-WebSocket-Key': Buffer.alloc(20, 1).toString('base64') }],
];

for (const [name, override] of BAD_400) {
    test(`upgrade with ${name} -> 400`, async () => {
        const r = await rawHttp(srv.port, upgradeRequest('GET', appPath(), { ...GOOD, ...override }));
        assert.equal(r.status, 400, `${r.statusLine}\n${r.body}`);
    });
}

test('Sec-WebSocket-Version: 8 -> 426 with Sec-WebSocket-Version: 13', async () => {
    const r = await rawHttp(srv.port, upgradeRequest('GET', appPath(), { ...GOOD, 'Sec-WebSocket-Version': '8' }));
    assert.equal(r.status, 426, `${r.statusLine}\n${r.body}`);
    assert.equal(r.headers['sec-websocket-version'], '13');
});

test('POST to /app/{key} -> 405', async () => {
    const r = await rawHttp(srv.port, upgradeRequest('POST', appPath(), { ...GOOD, 'Content-Length': '0' }));
    assert.equal(r.status, 405, `${r.statusLine}\n${r.body}`);
});

test('/app/ without a key -> 404', async () => {
    const r = await rawHttp(srv.port, upgradeRequest('GET', '/app/', GOOD));
    assert.equal(r.status, 404, `${r.statusLine}\n${r.body}`);
});

test('a rejected handshake does not disturb an open WebSocket', async () => {
    const ws = await RawWs.connect(srv.port, appPath());
    srv.track(ws);
    await ws.next();
    await rawHttp(srv.port, upgradeRequest('GET', appPath(), { ...GOOD, 'Sec-WebSocket-Key': null }));
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    ws.close();
});

test('handshake and a first frame (pusher:ping) in one write: the ping is answered', async () => {
    const ping = buildFrame(OP.TEXT, '{"event":"pusher:ping","data":{}}');
    const ws = await RawWs.connect(srv.port, appPath(), { extra: ping });
    srv.track(ws);
    assert.equal(ws.response.status, 101);
    const f = await ws.next();
    assert.match(f.text, /^\{"event":"pusher:connection_established"/);
    await ws.expectText(PONG);
    ws.close();
});

test('handshake and a 6 KB first frame in one write (beyond the 1k header buffer): all of it is read', async () => {
    const ping = buildFrame(OP.TEXT, JSON.stringify({ event: 'pusher:ping', data: { pad: 'p'.repeat(6000) } }));
    const ws = await RawWs.connect(srv.port, appPath(), { extra: ping });
    srv.track(ws);
    assert.match((await ws.next()).text, /^\{"event":"pusher:connection_established"/);
    await ws.expectText(PONG);
    ws.close();
});

test('large header buffers: a 2 KB header and 100 KB of frames in one write are all read, none dropped', async () => {
    const big = await startServer({ http: { large_client_header_buffers: '4 256k' } });
    try {
        /* 100 subscribes of ~1 KB, each answered by its own frame */
        const pad = 'p'.repeat(1000);
        const frames = Buffer.concat(Array.from({ length: 100 }, (_, i) => buildFrame(OP.TEXT,
            JSON.stringify({ event: 'pusher:subscribe', data: { auth: '', channel: `c-${i}`, pad } }))));
        const ws = await RawWs.connect(big.port, `/app/${big.key}?protocol=7`, { headers: { 'X-Pad': 'x'.repeat(2000) }, extra: frames });
        big.track(ws);
        assert.match((await ws.next()).text, /^\{"event":"pusher:connection_established"/);
        for (let i = 0; i < 100; i++) {
            await ws.expectText(JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel: `c-${i}`, data: '{}' }));
        }
        ws.close();
    } finally {
        await big.stop();
    }
});

test('nginx\'s limit_conn and limit_req in location /app/: at most 2 WebSockets per address, freed when one closes; handshakes over the rate get 503', async () => {
    const lim = await startServer({
        http: {
            limit_conn_zone: '$binary_remote_addr zone=ws_conns:1m',
            limit_req_zone: '$binary_remote_addr zone=ws_rate:1m rate=60r/m',
        },
        appLocation: { limit_conn: 'ws_conns 2', limit_req: 'zone=ws_rate burst=3 nodelay' },
    });
    try {
        const path = `/app/${lim.key}?protocol=7`;
        const a = await RawWs.connect(lim.port, path);
        const b = await RawWs.connect(lim.port, path);
        lim.track(a);
        lim.track(b);
        /* the count lives as long as the sockets, not as long as the handshake */
        const third = await RawWs.connect(lim.port, path, { allowFail: true });
        assert.equal(third.response.status, 503, third.response.statusLine);
        a.close();
        await a.tcpClosed;
        await new Promise((r) => setTimeout(r, 100));
        /* the 4th handshake of this minute: 1 + burst 3 */
        const c = await RawWs.connect(lim.port, path);
        lim.track(c);
        assert.match((await c.next()).text, /^\{"event":"pusher:connection_established"/);
        b.close();
        await b.tcpClosed;
        await new Promise((r) => setTimeout(r, 100));
        const fifth = await RawWs.connect(lim.port, path, { allowFail: true });
        assert.equal(fifth.response.status, 503, 'limit_req: the 5th handshake within the minute');
    } finally {
        await lim.stop();
    }
});

test('200 sockets that send half an upgrade request and stall: a normal client still gets connection_established at once; client_header_timeout closes them', async () => {
    const slow = await startServer({ http: { client_header_timeout: '2s' } });
    try {
        const half = [];
        for (let i = 0; i < 200; i++) {
            const sock = connectSocket(slow.port, slow.tls);
            sock.on('error', () => {});
            sock.gone = new Promise((resolve) => sock.on('close', resolve));
            sock.write(`GET /app/${slow.key}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n`);
            half.push(sock);
        }
        const t0 = Date.now();
        const ws = await RawWs.connect(slow.port, `/app/${slow.key}?protocol=7`);
        slow.track(ws);
        assert.match((await ws.next()).text, /^\{"event":"pusher:connection_established"/);
        const took = Date.now() - t0;
        assert.ok(took < 1000 * SLOW, `connection_established after ${took} ms`);
        /* nginx closes the stalled ones; the established one stays */
        await Promise.race([
            Promise.all(half.map((sock) => sock.gone)),
            new Promise((_, reject) => setTimeout(() => reject(new Error('stalled handshakes still open after 6 s')), 6000 * SLOW)),
        ]);
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
    } finally {
        await slow.stop();
    }
});

test('handshake and two frames in one write, the second split across the boundary', async () => {
    const ping = buildFrame(OP.TEXT, '{"event":"pusher:ping","data":{}}');
    const wsPing = buildFrame(OP.PING, 'x');
    const ws = await RawWs.connect(srv.port, appPath(), { extra: Buffer.concat([ping, wsPing.subarray(0, 3)]) });
    srv.track(ws);
    await ws.next();
    await ws.expectText(PONG);
    ws.write(wsPing.subarray(3));
    const f = await ws.next();
    assert.equal(f.opcode, OP.PONG);
    assert.equal(f.payload.toString(), 'x');
    ws.close();
});

test('the ws library (offering permessage-deflate) connects, no extension is negotiated, close 1000 round-trips', async () => {
    const WebSocket = require('ws');
    const c = new WebSocket(wsUrl(srv.port, `/app/${srv.key}?protocol=7&client=js&version=8.6.0`), { perMessageDeflate: true });
    srv.track({ close: () => c.terminate() });
    const msgs = [];
    const next = () => new Promise((resolve, reject) => {
        if (msgs.length) {
            resolve(msgs.shift());
            return;
        }
        const t = setTimeout(() => reject(new Error('ws: no message in 3 s')), 3000);
        c.once('message', () => {
            clearTimeout(t);
            resolve(msgs.shift());
        });
    });
    c.on('message', (data, isBinary) => msgs.push({ text: data.toString(), isBinary }));
    const upgrade = new Promise((resolve) => c.once('upgrade', resolve));
    await new Promise((resolve, reject) => {
        c.once('open', resolve);
        c.once('error', reject);
    });
    const res = await upgrade;
    assert.equal(res.headers['sec-websocket-extensions'], undefined, 'no extension may be negotiated');
    assert.equal(c.extensions, '');
    const first = await next();
    assert.equal(first.isBinary, false);
    assert.match(first.text, /^\{"event":"pusher:connection_established"/);
    c.send('{"event":"pusher:ping","data":{}}');
    assert.equal((await next()).text, PONG);
    const closed = new Promise((resolve) => c.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    c.close(1000, 'done');
    const cl = await closed;
    assert.equal(cl.code, 1000);
});
