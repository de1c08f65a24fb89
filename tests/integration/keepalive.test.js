'use strict';
// Tests for server keep-alive: ping_interval 1s, pong_timeout 1s.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, sleep, SLOW } = require('./lib/harness');
const { OP } = require('./lib/rawws');
const { connectRaw, subscribeRaw, errorFrame, SERVER_PING, PONG, pusherJs, waitState } = require('./lib/clients');

let srv;

before(async () => {
    srv = await startServer({ app: { ping_interval: '1s', pong_timeout: '1s' } });
});

after(async () => {
    await srv.stop();
});

test('an idle socket gets {"event":"pusher:ping","data":"{}"} after ~1 s', async () => {
    const ws = await connectRaw(srv);
    const t0 = Date.now();
    await ws.expectText(SERVER_PING, { timeout: 2500 });
    const dt = Date.now() - t0;
    assert.ok(dt >= 800, `pinged after only ${dt} ms`);
    ws.close();
});

test('answering with pusher:pong keeps the socket open across several intervals', async () => {
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'alive');
    const t0 = Date.now();
    let pings = 0;
    while (Date.now() - t0 < 4500 * SLOW) {
        const f = await ws.next({ timeout: 2500 });
        assert.equal(f.text, SERVER_PING, ws.dump());
        pings++;
        ws.sendJson({ event: 'pusher:pong', data: {} });
    }
    assert.ok(pings >= 2, `only ${pings} pings in 4.5 s`);
    assert.equal(ws.closeFrame, null, ws.dump());
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    ws.close();
});

test('a client answering with WebSocket pong frames stays open (server may switch to ping frames)', async () => {
    const ws = await connectRaw(srv);
    /* like Reverb, the server may ping with control frames once the client used them */
    for (let i = 0; i < 3; i++) {
        const f = await ws.next({ timeout: 2500, what: 'a server ping (pusher:ping or a ping frame)' });
        if (f.opcode === OP.PING) {
            ws.send(OP.PONG, f.payload);
        } else {
            assert.equal(f.text, SERVER_PING, ws.dump());
            ws.send(OP.PONG, '');
        }
    }
    assert.equal(ws.closeFrame, null, ws.dump());
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.next({ skip: true, pred: (f) => f.text === PONG, what: 'pusher:pong' });
    ws.close();
});

test('a client that ignores WebSocket ping frames is closed with 4201 too', async () => {
    const ws = await connectRaw(srv);
    await ws.expectText(SERVER_PING, { timeout: 2500 });
    ws.send(OP.PONG, '');
    /* from here on, no answers at all */
    const f = await ws.next({ timeout: 5000, skip: true, pred: (x) => x.opcode === OP.CLOSE, what: 'close 4201' });
    assert.equal(f.code, 4201, ws.dump());
    assert.ok(ws.frames.some((x) => x.text === errorFrame(4201, 'Pong reply not received in time')), ws.dump());
    await ws.expectTcpClose();
});

test('no answer: pusher:error 4201 "Pong reply not received in time", then close 4201', async () => {
    const ws = await connectRaw(srv);
    const t0 = Date.now();
    await ws.expectText(SERVER_PING, { timeout: 2500 });
    const tPing = Date.now();
    await ws.expectText(errorFrame(4201, 'Pong reply not received in time'), { timeout: 2500 });
    const dt = Date.now() - tPing;
    assert.ok(dt >= 800, `closed ${dt} ms after the ping (pong_timeout is 1s)`);
    await ws.expectClose(4201, 'Pong reply not received in time');
    ws.sendClose(4201);
    await ws.expectTcpClose();
    assert.ok(Date.now() - t0 < 5000 * SLOW);
});

test('a socket that keeps talking (pusher:ping every 400 ms) is never pinged by the server', async () => {
    const ws = await connectRaw(srv);
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
        await sleep(400);
    }
    assert.equal(ws.closeFrame, null);
    ws.close();
});

test('pusher-js answers server pings by itself and stays connected', async () => {
    const c = await pusherJs(srv);
    const id = c.connection.socket_id;
    await sleep(4000);
    await waitState(c, 'connected', 100);
    assert.equal(c.connection.socket_id, id, `pusher-js reconnected; states ${c.states.map((s) => s.current).join(' -> ')}`);
    c.disconnect();
});
