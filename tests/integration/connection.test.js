'use strict';
// Tests for connection_established, unknown app keys, pusher:ping and
// invalid client messages.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, sleep } = require('./lib/harness');
const { RawWs, OP, buildFrame } = require('./lib/rawws');
const { PONG, SOCKET_ID_RE, connectRaw, subscribeRaw, errorFrame, pusherJs, establishedFrame } = require('./lib/clients');

let srv;

before(async () => {
    srv = await startServer();
});

after(async () => {
    await srv.stop();
});

test('connection_established carries "<worker pid>.<counter>" socket_ids, distinct, from both workers', async () => {
    const workers = srv.workerPids();
    const ids = [];
    for (let i = 0; i < 20; i++) {
        const ws = await connectRaw(srv);
        ids.push(ws.socketId);
        ws.close();
    }
    for (const id of ids) {
        assert.match(id, SOCKET_ID_RE);
        const pid = Number(id.split('.')[0]);
        assert.ok(workers.includes(pid), `socket_id ${id}: ${pid} is not a worker pid (${workers})`);
    }
    assert.equal(new Set(ids).size, ids.length, `duplicate socket_ids: ${ids}`);
    const pids = new Set(ids.map((id) => id.split('.')[0]));
    assert.ok(pids.size >= 2, `all 20 connections on one worker: ${ids}`);
});

test('the first frame is exactly connection_established with activity_timeout 30', async () => {
    const ws = await RawWs.connect(srv.port, `/app/${srv.key}`);
    srv.track(ws);
    const f = await ws.next();
    const sid = JSON.parse(JSON.parse(f.text).data).socket_id;
    assert.equal(f.text, establishedFrame(sid, 30));
    await ws.expectNothing(200);
    ws.close();
});

test('unknown app key: pusher:error 4001, close 4001 "Application does not exist", TCP closed', async () => {
    const ws = await RawWs.connect(srv.port, '/app/no-such-key?protocol=7');
    srv.track(ws);
    assert.equal(ws.response.status, 101);
    await ws.expectText(errorFrame(4001, 'Application does not exist'));
    await ws.expectClose(4001, 'Application does not exist');
    ws.sendClose(4001);
    await ws.expectTcpClose();
    assert.equal(ws.frames.length, 2, ws.dump());
});

test('unknown app key: pusher-js gives up instead of reconnecting', async () => {
    const marker = `no-such-key-${Date.now()}`;
    const c = await pusherJs(srv, { key: marker, noWait: true });
    await sleep(2000);
    const states = c.states.map((s) => s.current);
    const connecting = states.filter((s) => s === 'connecting').length;
    const attempts = srv.accessLog().split('\n').filter((l) => l.includes(`/app/${marker}`)).length;
    c.disconnect();
    assert.equal(attempts, 1, `connection attempts in the access log: ${attempts}; pusher-js states: ${states.join(' -> ')}`);
    /* the first 'connecting' happens inside the constructor, before we can bind */
    assert.equal(connecting, 0, `pusher-js retried: states ${states.join(' -> ')}`);
    assert.ok(!states.includes('connected'), `pusher-js states: ${states.join(' -> ')}`);
    assert.ok(['failed', 'disconnected'].includes(states[states.length - 1]), `pusher-js states: ${states.join(' -> ')}`);
});

test('pusher:ping -> exactly {"event":"pusher:pong","data":"{}"}', async () => {
    const ws = await connectRaw(srv);
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    /* data as a JSON string and without data */
    ws.sendText('{"event":"pusher:ping","data":"{}"}');
    await ws.expectText(PONG);
    ws.sendText('{"event":"pusher:ping"}');
    await ws.expectText(PONG);
    ws.close();
});

test('WebSocket ping frame "abc" -> pong frame "abc"', async () => {
    const ws = await connectRaw(srv);
    ws.send(OP.PING, 'abc');
    const f = await ws.next();
    assert.equal(f.opcode, OP.PONG, ws.dump());
    assert.equal(f.payload.toString(), 'abc');
    assert.ok(f.fin);
    /* empty and maximum (125 byte) payloads */
    ws.send(OP.PING, '');
    const e = await ws.next();
    assert.equal(e.opcode, OP.PONG, ws.dump());
    assert.equal(e.payload.length, 0);
    const big = Buffer.alloc(125, 0x61);
    ws.send(OP.PING, big);
    const b = await ws.next();
    assert.equal(b.opcode, OP.PONG, ws.dump());
    assert.deepEqual(b.payload, big);
    ws.close();
});

test('an unsolicited pong frame is ignored', async () => {
    const ws = await connectRaw(srv);
    ws.send(OP.PONG, 'zz');
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    ws.close();
});

const INVALID = [
    ['invalid JSON', '{nope'],
    ['a JSON object without "event"', '{"data":{}}'],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"pusher:ping"'],
    ['"event" that is not a string', '{"event":42}'],
    ['an empty message', ''],
];

for (const [name, text] of INVALID) {
    test(`${name} -> pusher:error 4200 "Invalid message format", socket stays usable`, async () => {
        const ws = await connectRaw(srv);
        ws.sendText(text);
        await ws.expectText(errorFrame(4200, 'Invalid message format'));
        await subscribeRaw(ws, 'my-channel');
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
        assert.equal(ws.closeFrame, null);
        ws.close();
    });
}

test('many invalid messages in a row are each answered and the socket stays open', async () => {
    const ws = await connectRaw(srv);
    for (let i = 0; i < 50; i++) {
        ws.sendText('{nope');
    }
    for (let i = 0; i < 50; i++) {
        await ws.expectText(errorFrame(4200, 'Invalid message format'));
    }
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    ws.close();
});

test('a binary frame carrying a pusher:ping is answered or refused, never crashes', async () => {
    const ws = await connectRaw(srv);
    ws.write(buildFrame(OP.BINARY, '{"event":"pusher:ping","data":{}}'));
    const f = await ws.next();
    /* Reverb/soketi parse binary as text; RFC-strict servers close 1003 */
    if (f.opcode === OP.TEXT) {
        assert.ok([PONG, errorFrame(4200, 'Invalid message format')].includes(f.text), ws.dump());
    } else {
        assert.equal(f.opcode, OP.CLOSE, ws.dump());
        assert.ok([1003, 1002].includes(f.code), ws.dump());
    }
    ws.close();
});
