'use strict';
// Nothing lost when the ring fills: an event answered 200 reaches every
// subscriber that keeps reading.  The broker writes nothing over what a
// worker that keeps up has yet to read (it waits, or answers 503 with
// nothing written); a worker that has stopped is lapped after a second and
// closes its subscribed sockets with 4200 when it runs again, so that
// pusher-js reconnects and the app refetches.  A multi-channel event costs
// the ring its data once.
//
// The ring is 8 MiB.  The filler events go to a channel without
// subscribers, so that a worker that was stopped catches up with little
// to send; the sequence-numbered events on "seq" are what the subscribers
// check.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, sleep, waitUntil, SLOW } = require('./lib/harness');
const {
    connectRaw, connectAlternating, subscribeRaw, errorFrame, eventFrame, signedRequest,
} = require('./lib/clients');

let srv;

before(async () => {
    srv = await startServer({ app: { max_event_data: '600k', max_request_size: '1m', max_batch_events: 20 } });
});

after(async () => {
    await srv.stop();
});

const FILLER = 'f'.repeat(500 * 1000);

/* on the broker's socket: a stopped worker may hold nginx's half of it */
function post(body) {
    return signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, { body: JSON.stringify(body), broker: true });
}

async function expectSeq(ws, from, to) {
    for (let i = from; i < to; i++) {
        await ws.expectText(eventFrame('n', 'seq', String(i)), { timeout: 10000 });
    }
}

test('one batch of 10 events on 100 channels each, 9,000 escaped bytes apiece, then two 100-channel events at once: 12 of 12 arrive', { timeout: 60000 * SLOW }, async () => {
    const channels = Array.from({ length: 100 }, (_, i) => `room-${i}`);
    const socks = await connectAlternating(srv, 2);
    for (const ws of socks) {
        await subscribeRaw(ws, 'room-42');
    }
    /* every byte escapes to \u0001: the JSON of each record is ~6x the data */
    const data = '\u0001'.repeat(9000);
    const batch = Array.from({ length: 10 }, (_, i) => ({ name: `b${i}`, channels, data }));
    const r = await signedRequest(srv, 'POST', `/apps/${srv.appId}/batch_events`, { body: JSON.stringify({ batch }) });
    assert.equal(r.status, 200, r.body);
    const two = await Promise.all([0, 1].map((i) => post({ name: `e${i}`, channels, data })));
    for (const x of two) {
        assert.equal(x.status, 200, x.body);
    }
    const expected = [...batch.map((b) => b.name)];
    for (const ws of socks) {
        for (const name of expected) {
            await ws.expectText(eventFrame(name, 'room-42', data), { timeout: 10000 });
        }
        /* the two concurrent ones, in either order */
        const last = [await ws.next({ timeout: 10000 }), await ws.next({ timeout: 10000 })].map((f) => f.text).sort();
        assert.deepEqual(last, [eventFrame('e0', 'room-42', data), eventFrame('e1', 'room-42', data)].sort());
    }
    for (const line of srv.errorLog().split('\n')) {
        assert.doesNotMatch(line, /lapped|fell a whole ring behind/, line);
    }
});

test('a worker stopped for 300 ms while 10 MB are published: the broker waits for it, every event of 40 arrives, every answer is 200', { timeout: 60000 * SLOW }, async (t) => {
    const [a, b] = await connectAlternating(srv, 2);
    for (const ws of [a, b]) {
        await subscribeRaw(ws, 'seq');
    }
    const t0 = Date.now();
    process.kill(b.worker, 'SIGSTOP');
    let resumed = false;
    const resume = sleep(300).then(() => {
        process.kill(b.worker, 'SIGCONT');
        resumed = true;
    });
    try {
        for (let i = 0; i < 20; i++) {
            const f = await post({ name: 'f', channel: 'filler', data: FILLER });
            assert.equal(f.status, 200, f.body);
            const s = await post({ name: 'n', channel: 'seq', data: String(i) });
            assert.equal(s.status, 200, s.body);
        }
    } finally {
        await resume;
    }
    assert.ok(resumed);
    t.diagnostic(`published 10 MB with a worker stopped for 300 ms in ${Date.now() - t0} ms`);
    await expectSeq(a, 0, 20);
    await expectSeq(b, 0, 20);
    await a.expectNothing(50);
    await b.expectNothing(50);
});

test('a worker stopped for 3 s while 10 MB are published: the others do not wait for it; when it runs again its subscribed sockets get 4200, an unsubscribed one stays', { timeout: 60000 * SLOW }, async (t) => {
    const [a, b, idle] = await connectAlternating(srv, 3);
    assert.equal(idle.worker, a.worker);
    const idleOnB = await waitUntil(async () => {
        const ws = await connectRaw(srv);
        if (ws.worker === b.worker) {
            return ws;
        }
        ws.close();
        return null;
    }, 5000, 'a socket on the worker that will be stopped');
    for (const ws of [a, b]) {
        await subscribeRaw(ws, 'seq');
    }
    process.kill(b.worker, 'SIGSTOP');
    const t0 = Date.now();
    let took;
    try {
        for (let i = 0; i < 20; i++) {
            const f = await post({ name: 'f', channel: 'filler', data: FILLER });
            assert.equal(f.status, 200, f.body);
            const s = await post({ name: 'n', channel: 'seq', data: String(i) });
            assert.equal(s.status, 200, s.body);
        }
        took = Date.now() - t0;
        /* one request waited for the stopped worker, about a second */
        assert.ok(took < 2500 * SLOW, `publishing took ${took} ms`);
        await expectSeq(a, 0, 20);
        await sleep(Math.max(0, 3000 - (Date.now() - t0)));
    } finally {
        process.kill(b.worker, 'SIGCONT');
    }
    t.diagnostic(`published 10 MB past a stopped worker in ${took} ms`);

    /* whatever it still had, then the announced reconnect */
    const got = [];
    for (;;) {
        const f = await b.next({ timeout: 5000 });
        if (f.text === eventFrame('n', 'seq', String(got.length))) {
            got.push(got.length);
            continue;
        }
        assert.equal(f.text, errorFrame(4200, 'Missed events after a pause, reconnect'), b.dump());
        break;
    }
    await b.expectClose(4200, 'Missed events after a pause, reconnect');
    t.diagnostic(`the stopped worker's subscriber got ${got.length} of 20 events, then 4200`);
    assert.ok(got.length < 20);

    /* the sockets without subscriptions are not affected */
    for (const ws of [idle, idleOnB]) {
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText('{"event":"pusher:pong","data":"{}"}');
    }
    await a.expectNothing(50);
});
