'use strict';
// Tests that a subscriber that stops reading cannot stall other
// subscribers or make a worker buffer without bound.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { before, after } = require('node:test');

const { startServer, test, socketWorker, sleep, SLOW, httpRequest } = require('./lib/harness');
const { signedPath } = require('./lib/sign');
const { buildFrame, OP } = require('./lib/rawws');
const {
    connectRaw, connectRawAcrossWorkers, subscribeRaw, eventFrame, sdk, sdkTrigger,
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

function rssKb(pid) {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
}

test('a subscriber that never reads: others get every event in order, the worker does not buffer without bound', { timeout: 90000 * SLOW }, async (t) => {
    const fast = await connectRawAcrossWorkers(srv, 2);
    for (const ws of fast) {
        await subscribeRaw(ws, 'flood');
    }
    const slow = await connectRaw(srv);
    await subscribeRaw(slow, 'flood');
    slow.sock.pause();
    const worker = socketWorker(slow.socketId);
    const rss0 = rssKb(worker);

    const N = 4000;
    const data = 'z'.repeat(10000);
    let next = 0;
    /* 8 requests in flight; per-socket order is checked on the sequence numbers */
    await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < N) {
            const i = next++;
            const body = JSON.stringify({ name: 'f', channels: ['flood'], data: `${i}:${data}` });
            const p = signedPath({ method: 'POST', path: `/apps/${srv.appId}/events`, body, key: srv.key, secret: srv.secret });
            const r = await httpRequest(srv.port, 'POST', p, { body });
            assert.equal(r.status, 200, r.body);
        }
    }));
    const seq = (f) => {
        const d = JSON.parse(f.text).data;
        return Number(d.slice(0, d.indexOf(':')));
    };
    /* the ring has one order; every subscriber sees it */
    let order = null;
    for (const ws of fast) {
        const got = [];
        for (let k = 0; k < N; k++) {
            got.push(seq(await ws.next({ timeout: 10000 })));
        }
        assert.equal(new Set(got).size, N, `fast subscriber ${ws.socketId} got ${new Set(got).size}/${N} distinct events`);
        if (order) {
            assert.deepEqual(got, order, `${ws.socketId} saw another order than ${fast[0].socketId}`);
        }
        order = order || got;
    }
    const rss1 = rssKb(worker);
    t.diagnostic(`worker ${worker} RSS ${rss0} kB -> ${rss1} kB with ~${(N * 10) / 1000} MB sent to a subscriber that does not read`);
    /* ASan keeps freed memory in its quarantine: RSS says nothing there */
    if (process.env.PUSHER_SANITIZE !== '1') {
        assert.ok(rss1 - rss0 < 32 * 1024, `worker RSS grew by ${rss1 - rss0} kB for one slow subscriber`);
    }
    /* the slow socket was either dropped, or it catches up in order */
    slow.sock.resume();
    await new Promise((r) => setTimeout(r, 1000));
    const nums = slow.frames.slice(slow.cursor).filter((f) => f.text).map(seq);
    t.diagnostic(`slow subscriber: ${nums.length} events after resuming, ${slow.closeFrame ? `close ${slow.closeFrame.code} "${slow.closeFrame.reason}"` : 'no close frame'}, TCP ${slow.ended ? 'closed' : 'open'}`);
    /* what it got is the start of the common order: nothing skipped, nothing reordered */
    assert.deepEqual(nums, order.slice(0, nums.length), 'the slow subscriber saw a gap or another order');
    if (nums.length < N) {
        assert.ok(slow.ended, `slow subscriber got ${nums.length}/${N} events and is still open (silent loss)`);
    }
    for (const ws of fast) {
        ws.close();
    }
    slow.close();
});

/*
 * n empty WebSocket pings (6 bytes each on the wire, masked) or pusher:ping
 * messages in one buffer
 */
function pingFlood(n, text) {
    const one = text ? buildFrame(OP.TEXT, '{"event":"pusher:ping","data":{}}') : buildFrame(OP.PING, '');
    return Buffer.concat(Array.from({ length: n }, () => one));
}

for (const [what, text] of [['WebSocket pings', false], ['pusher:ping messages', true]]) {
    test(`8 sockets that flood ${what} and never read hold one reply each: the worker does not grow, the others are served`, { timeout: 60000 * SLOW }, async (t) => {
        const [probe] = await connectRawAcrossWorkers(srv, 1);
        await subscribeRaw(probe, 'calm');
        const worker = socketWorker(probe.socketId);
        const flooders = [];
        while (flooders.length < 8) {
            const ws = await connectRaw(srv);
            if (ws.worker === worker) {
                ws.sock.pause();
                flooders.push(ws);
            } else {
                ws.close();
            }
        }
        const rss0 = rssKb(worker);
        /* 200,000 pings per socket, 1.2 MB (or 8 MB of pusher:ping) each */
        const burst = pingFlood(text ? 25000 : 200000, text);
        for (const ws of flooders) {
            ws.write(burst);
        }
        await sleep(1500 * SLOW);
        /* the others are served meanwhile */
        const r = await sdkTrigger(api, 'calm', 'e', { n: 1 });
        assert.equal(r.status, 200);
        await probe.expectText(eventFrame('e', 'calm', { n: 1 }), { timeout: 5000 });
        const rss1 = rssKb(worker);
        t.diagnostic(`worker ${worker} RSS ${rss0} kB -> ${rss1} kB with 8 sockets flooding ${what}`);
        if (process.env.PUSHER_SANITIZE !== '1') {
            assert.ok(rss1 - rss0 < 8 * 1024, `worker RSS grew by ${rss1 - rss0} kB`);
        }
        /* each still holds a reply: it gets it when it reads */
        for (const ws of flooders) {
            ws.sock.resume();
        }
        for (const ws of flooders) {
            const f = await ws.next({ timeout: 5000, skip: true, what: 'a reply', pred: (x) => x.opcode === OP.PONG || (x.text || '').includes('pusher:pong') });
            assert.ok(f);
            ws.close();
        }
        probe.close();
    });
}
