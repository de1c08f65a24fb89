'use strict';
// WebSockets on nginx's own TLS listener ("listen ... ssl http2"), in the
// plain suite too: the byte stream after the 101, frames larger than the
// SSL buffer to a reader that stalls (SSL_write retried with the same
// bytes), HTTP/2 and WebSockets over HTTP/1.1 on one port, and the close
// handshake ending in close_notify and FIN.  The whole suite also runs over
// TLS (PUSHER_TLS=1 tests/integration/run).

const assert = require('node:assert/strict');
const http2 = require('node:http2');
const { before, after } = require('node:test');

const { startServer, test, sleep, SLOW } = require('./lib/harness');
const { RawWs, OP } = require('./lib/rawws');
const {
    connectRaw, subscribeRaw, eventFrame, establishedFrame, errorFrame, sdk, sdkTrigger, PONG,
} = require('./lib/clients');

let srv;
let api;

before(async () => {
    srv = await startServer({
        tls: true,
        app: { max_event_data: '300k', max_message_size: '20000' },
    });
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

const APP_PATH = () => `/app/${srv.key}?protocol=7&client=js&version=8.6.0&flash=false`;

test('wss: after the 101 the stream holds exactly connection_established, then the pong: the 101 is not sent again', async () => {
    const ws = await RawWs.connect(srv.port, APP_PATH(), { tls: true });
    srv.track(ws);
    assert.equal(ws.response.statusLine, 'HTTP/1.1 101 Switching Protocols');
    const est = await ws.next();
    const sid = JSON.parse(JSON.parse(est.text).data).socket_id;
    assert.equal(est.text, establishedFrame(sid));
    for (let i = 0; i < 5; i++) {
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
    }
    ws.send(OP.PING, 'tls');
    const pong = await ws.next();
    assert.equal(pong.opcode, OP.PONG);
    assert.equal(pong.payload.toString(), 'tls');
    await ws.expectNothing(100);
    assert.equal(ws.frames.length, 7, ws.dump());
    ws.close();
});

test('wss: 10 events of 200 KB to a subscriber that stops reading for a second arrive whole and in order', { timeout: 60000 * SLOW }, async () => {
    const ws = await connectRaw(srv, { tls: true });
    await subscribeRaw(ws, 'big');
    ws.sock.pause();
    const N = 10;
    const datas = [];
    for (let i = 0; i < N; i++) {
        datas.push(`${i}:${String.fromCharCode(97 + i).repeat(200 * 1000)}`);
    }
    /* sent one after the other: the socket's queue stays under its 1 MB bound */
    const sending = (async () => {
        for (const d of datas) {
            await sdkTrigger(api, 'big', 'chunk', d);
            await sleep(100);
        }
    })();
    await sleep(1000);
    ws.sock.resume();
    await sending;
    for (let i = 0; i < N; i++) {
        await ws.expectText(eventFrame('chunk', 'big', datas[i]), { timeout: 10000 });
    }
    await ws.expectNothing(100);
    ws.close();
});

test('"ssl http2" port: HTTP/2 requests are served, a WebSocket upgrade over HTTP/2 gets 400, WebSockets use HTTP/1.1 beside it', async () => {
    const session = http2.connect(`https://127.0.0.1:${srv.port}`);
    srv.track({ close: () => session.destroy() });
    const get = (path) => new Promise((resolve, reject) => {
        const req = session.request({ ':path': path });
        let body = '';
        let status;
        req.on('response', (h) => {
            status = h[':status'];
        });
        req.setEncoding('utf8');
        req.on('data', (d) => {
            body += d;
        });
        req.on('end', () => resolve({ status, body }));
        req.on('error', reject);
        req.end();
    });
    const up = await get('/up');
    assert.equal(up.status, 200);
    assert.deepEqual(JSON.parse(up.body), { health: 'OK' });
    assert.equal(session.alpnProtocol, 'h2');
    /* nginx offers no RFC 8441 WebSockets over HTTP/2 */
    assert.equal((await get(APP_PATH())).status, 400);

    /* the same port, HTTP/1.1 through ALPN, as browsers open WebSockets */
    const ws = await connectRaw(srv, { tls: true });
    assert.equal(ws.sock.alpnProtocol, 'http/1.1');
    await subscribeRaw(ws, 'h2-neighbour');
    await sdkTrigger(api, 'h2-neighbour', 'e', { n: 1 });
    await ws.expectText(eventFrame('e', 'h2-neighbour', { n: 1 }));
    ws.close();
    session.close();
});

test('wss: a client close is answered with the same code, then close_notify and FIN at once', async () => {
    const ws = await connectRaw(srv, { tls: true });
    const ended = new Promise((resolve) => ws.sock.once('end', resolve));
    const t0 = Date.now();
    ws.sendClose(1000, 'bye');
    await ws.expectClose(1000);
    await ended;
    await ws.expectTcpClose(1000);
    assert.ok(Date.now() - t0 < 1000 * SLOW, `closed after ${Date.now() - t0} ms`);
});

test('wss: a server close (unknown app key 4001) ends with close_notify and FIN, before the client answers', async () => {
    const ws = await RawWs.connect(srv.port, '/app/no-such-key?protocol=7', { tls: true });
    srv.track(ws);
    const ended = new Promise((resolve) => ws.sock.once('end', resolve));
    const t0 = Date.now();
    await ws.expectText(errorFrame(4001, 'Application does not exist'));
    await ws.expectClose(4001);
    /* the TLS socket ends (close_notify read) without any frame from us */
    await ended;
    await ws.expectTcpClose(1000);
    assert.ok(Date.now() - t0 < 1000 * SLOW, `closed after ${Date.now() - t0} ms`);
});
