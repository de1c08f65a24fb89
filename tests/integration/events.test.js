'use strict';
// Tests for HTTP-triggered events reaching subscribers on both workers:
// exact frames, socket_id exclusion, batches, order and no loss.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, waitUntil, socketWorker, SLOW } = require('./lib/harness');
const { OP } = require('./lib/rawws');
const {
    connectRaw, connectRawAcrossWorkers, subscribeRaw, eventFrame, sdk, sdkTrigger, pusherJs, pjsSubscribe, PONG,
} = require('./lib/clients');

let srv;
let api;

before(async () => {
    srv = await startServer();
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

test('pusher.trigger -> 200 {} and every raw subscriber on both workers gets the exact frame', async () => {
    const socks = await connectRawAcrossWorkers(srv, 6);
    for (const ws of socks) {
        await subscribeRaw(ws, 'my-channel');
    }
    const r = await sdkTrigger(api, 'my-channel', 'my-event', { hello: 'world' });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), {});
    for (const ws of socks) {
        await ws.expectText('{"event":"my-event","channel":"my-channel","data":"{\\"hello\\":\\"world\\"}"}');
    }
    for (const ws of socks) {
        await ws.expectNothing(50);
        ws.close();
    }
});

test('pusher-js subscribers on both workers get the event with data {hello:"world"}', async () => {
    const clients = [];
    for (let i = 0; i < 10 || new Set(clients.map((c) => socketWorker(c.connection.socket_id))).size < 2; i++) {
        assert.ok(i < 40, 'pusher-js clients all landed on one worker');
        clients.push(await pusherJs(srv));
    }
    const got = new Map();
    for (const c of clients) {
        const ch = await pjsSubscribe(c, 'pjs-channel');
        ch.bind('my-event', (d) => got.set(c, d));
    }
    const pids = new Set(clients.map((c) => socketWorker(c.connection.socket_id)));
    assert.deepEqual([...pids].sort(), srv.workerPids(), 'both workers hold pusher-js clients');
    await sdkTrigger(api, 'pjs-channel', 'my-event', { hello: 'world' });
    await waitUntil(() => got.size === clients.length, 3000,
        () => `only ${got.size}/${clients.length} pusher-js clients got the event; missing on workers ${clients.filter((c) => !got.has(c)).map((c) => c.connection.socket_id)}`);
    for (const d of got.values()) {
        assert.deepEqual(d, { hello: 'world' });
    }
    for (const c of clients) {
        c.disconnect();
    }
});

test('event data is passed through as the exact string (unicode, quotes, a non-JSON string)', async () => {
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'data-channel');
    const cases = [
        { s: 'üñí "quoted" \\ back\tslash\n' },
        'just a string, not JSON',
        [1, 2, { x: null }],
        '',
    ];
    for (const d of cases) {
        await sdkTrigger(api, 'data-channel', 'd', d);
        const f = await ws.next();
        assert.equal(f.opcode, OP.TEXT);
        const j = JSON.parse(f.text);
        assert.equal(j.event, 'd');
        assert.equal(j.channel, 'data-channel');
        assert.equal(j.data, typeof d === 'string' ? d : JSON.stringify(d), f.text);
        assert.equal(f.text, eventFrame('d', 'data-channel', typeof d === 'string' ? d : JSON.stringify(d)));
    }
    ws.close();
});

test('trigger to several channels at once reaches each subscriber once per channel', async () => {
    const a = await connectRaw(srv);
    const b = await connectRaw(srv);
    await subscribeRaw(a, 'multi-a');
    await subscribeRaw(b, 'multi-b');
    await subscribeRaw(b, 'multi-a');
    const r = await sdkTrigger(api, ['multi-a', 'multi-b'], 'm', { k: 1 });
    assert.equal(r.status, 200);
    await a.expectText(eventFrame('m', 'multi-a', { k: 1 }));
    const got = [(await b.next()).text, (await b.next()).text].sort();
    assert.deepEqual(got, [eventFrame('m', 'multi-a', { k: 1 }), eventFrame('m', 'multi-b', { k: 1 })].sort());
    await a.expectNothing(100);
    await b.expectNothing(100);
    a.close();
    b.close();
});

test('socket_id exclusion: the excluded socket gets nothing, the others get the event', async () => {
    const socks = await connectRawAcrossWorkers(srv, 4);
    for (const ws of socks) {
        await subscribeRaw(ws, 'excl');
    }
    /* exclude one on each worker in turn */
    for (const excluded of [socks[0], socks.find((s) => s.worker !== socks[0].worker)]) {
        const r = await sdkTrigger(api, 'excl', 'x', { from: excluded.socketId }, { socket_id: excluded.socketId });
        assert.equal(r.status, 200);
        await sdkTrigger(api, 'excl', 'marker', { m: 1 });
        for (const ws of socks) {
            if (ws !== excluded) {
                await ws.expectText(eventFrame('x', 'excl', { from: excluded.socketId }));
            }
            await ws.expectText(eventFrame('marker', 'excl', { m: 1 }));
        }
    }
    for (const ws of socks) {
        ws.close();
    }
});

test('pusher.triggerBatch of 3 events on 2 channels -> 200, each subscriber gets its events in order', async () => {
    const socks = await connectRawAcrossWorkers(srv, 4);
    const chans = ['batch-1', 'batch-2'];
    const subs = socks.map((ws, i) => ({ ws, chans: i % 3 === 2 ? chans : [chans[i % 3]] }));
    for (const s of subs) {
        for (const c of s.chans) {
            await subscribeRaw(s.ws, c);
        }
    }
    const batch = [
        { channel: 'batch-1', name: 'e1', data: JSON.stringify({ i: 1 }) },
        { channel: 'batch-2', name: 'e2', data: JSON.stringify({ i: 2 }) },
        { channel: 'batch-1', name: 'e3', data: JSON.stringify({ i: 3 }) },
    ];
    let res;
    try {
        res = await api.triggerBatch(batch);
    } catch (e) {
        assert.fail(`triggerBatch: ${e.status} ${e.body}`);
    }
    assert.equal(res.status, 200);
    const body = JSON.parse(await res.text());
    assert.ok(typeof body === 'object' && body !== null, JSON.stringify(body));
    for (const s of subs) {
        for (const b of batch) {
            if (s.chans.includes(b.channel)) {
                await s.ws.expectText(eventFrame(b.name, b.channel, b.data));
            }
        }
        await s.ws.expectNothing(50);
        s.ws.close();
    }
});

test('500 rapid triggers on one channel arrive complete and in order at subscribers on both workers', { timeout: 60000 * SLOW }, async () => {
    const socks = await connectRawAcrossWorkers(srv, 6);
    for (const ws of socks) {
        await subscribeRaw(ws, 'order');
    }
    const N = 500;
    /* sequential: each trigger is acknowledged (written to the ring) before the next is sent */
    for (let i = 0; i < N; i++) {
        const r = await sdkTrigger(api, 'order', 'seq', { n: i });
        assert.equal(r.status, 200, `trigger ${i}: ${r.status} ${r.body}`);
    }
    for (const ws of socks) {
        const got = [];
        try {
            for (let i = 0; i < N; i++) {
                const f = await ws.next({ timeout: 5000 });
                got.push(JSON.parse(JSON.parse(f.text).data).n);
            }
        } catch (e) {
            assert.fail(`socket ${ws.socketId} got ${got.length}/${N}; last ${got.slice(-5)}: ${e.message.slice(0, 500)}`);
        }
        assert.deepEqual(got, Array.from({ length: N }, (_, i) => i), `socket ${ws.socketId}`);
        await ws.expectNothing(50);
        ws.close();
    }
});

test('500 concurrent triggers (20 in flight) on 5 channels: every subscriber gets all, per-channel order kept', { timeout: 60000 * SLOW }, async () => {
    const socks = await connectRawAcrossWorkers(srv, 4);
    const chans = ['c0', 'c1', 'c2', 'c3', 'c4'];
    for (const ws of socks) {
        for (const c of chans) {
            await subscribeRaw(ws, c);
        }
    }
    /* one sequential chain per channel, 4 requests in flight per channel */
    const PER = 100;
    await Promise.all(chans.map(async (c) => {
        for (let i = 0; i < PER; i += 4) {
            /* within a group of 4 the order is not defined; between groups it is */
            await Promise.all([0, 1, 2, 3].map((k) => sdkTrigger(api, c, 'p', { c, n: i + k })));
        }
    }));
    for (const ws of socks) {
        const per = Object.fromEntries(chans.map((c) => [c, []]));
        for (let i = 0; i < PER * chans.length; i++) {
            const f = await ws.next({ timeout: 5000 });
            const d = JSON.parse(JSON.parse(f.text).data);
            per[d.c].push(d.n);
        }
        for (const c of chans) {
            const got = per[c];
            assert.equal(got.length, PER);
            assert.deepEqual([...got].sort((x, y) => x - y), Array.from({ length: PER }, (_, i) => i), `${ws.socketId} ${c}`);
            for (let g = 0; g < PER; g += 4) {
                const group = got.slice(g, g + 4).map((n) => Math.floor(n / 4));
                assert.deepEqual(group, [g / 4, g / 4, g / 4, g / 4], `${ws.socketId} ${c}: order across groups: ${got}`);
            }
        }
        ws.close();
    }
});

test('many bad inputs on one connection do not affect another connection', async () => {
    const good = await connectRaw(srv);
    await subscribeRaw(good, 'robust');
    const bad = await connectRaw(srv);
    await subscribeRaw(bad, 'robust');
    for (let i = 0; i < 20; i++) {
        bad.sendText('{nope');
        bad.sendJson({ event: 'pusher:subscribe', data: { channel: 'bad channel!' } });
        bad.sendJson({ event: 'pusher:subscribe', data: { channel: 'private-x', auth: 'k:00' } });
    }
    await sdkTrigger(api, 'robust', 'r', { i: 0 });
    await good.expectText(eventFrame('r', 'robust', { i: 0 }));
    /* invalid UTF-8, then garbage after the close */
    bad.send(OP.TEXT, Buffer.from([0xc3, 0x28]));
    bad.write(Buffer.from('garbage that is not a frame at all'));
    await bad.expectTcpClose();
    await sdkTrigger(api, 'robust', 'r', { i: 1 });
    await good.expectText(eventFrame('r', 'robust', { i: 1 }));
    good.sendJson({ event: 'pusher:ping', data: {} });
    await good.expectText(PONG);
    good.close();
});
