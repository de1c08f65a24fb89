'use strict';
// A broker that restarts under a worker holding a lot of state: after
// kill -9 and a restart, each worker announces again every channel it has
// subscribers for (OCCUPANCY), every presence membership and every
// signed-in socket.  100 sockets x 1,000 channels with 199-byte names are
// ~11 MB of OCCUPANCY per restart; the announcement is streamed as the
// broker reads it, so the workers re-attach at once, stay attached, and
// the broker ends up knowing every occupied channel, while sockets come
// and go during the stream.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { before, after } = require('node:test');

const { startServer, test, waitUntil, sleep, SLOW } = require('./lib/harness');
const {
    connectRaw, connectAlternating, subscribeRaw, joinPresence, sdk, sdkTrigger, signedRequest, eventFrame,
    sendPresenceSubscribe,
} = require('./lib/clients');

const SOCKETS = 100;
const CHANNELS = 1000;          /* NGX_HTTP_PUSHER_MAX_SUBSCRIPTIONS */
const NAME_LEN = 199;

let srv;
let api;

before(async () => {
    srv = await startServer();
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

/* channel k of socket i: 199 bytes, unique, sorted by (i, k) */
function channelName(i, k) {
    const head = `big-${String(i).padStart(3, '0')}-${String(k).padStart(4, '0')}-`;
    return head + 'x'.repeat(NAME_LEN - head.length);
}

/* subscribes ws to all names at once and waits for every answer */
async function subscribeMany(ws, names) {
    const want = new Set(names);
    const from = ws.frames.length;
    for (const channel of names) {
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel } });
    }
    await waitUntil(() => {
        for (let n = from; n < ws.frames.length; n++) {
            const t = ws.frames[n].text;
            if (t && t.startsWith('{"event":"pusher_internal:subscription_succeeded"')) {
                want.delete(JSON.parse(t).channel);
            }
        }
        return want.size === 0 || ws.ended;
    }, 20000, () => `${ws.socketId}: ${want.size} of ${names.length} subscriptions unanswered`, 50);
    assert.equal(ws.ended, false, `${ws.socketId} closed while subscribing`);
    /* the answers are not needed any more: keep the frame list short */
    ws.frames.length = 0;
    ws.cursor = 0;
}

/* the occupied channels the broker reports for the app, as a Set */
async function occupied() {
    const r = await signedRequest(srv, 'GET', `/apps/${srv.appId}/channels`);
    assert.equal(r.status, 200, `GET /channels: ${r.status} ${r.body.slice(0, 300)}`);
    return new Set(Object.keys(r.json.channels));
}

/* broker.stderr since the last "--- start" line the harness writes */
function brokerLogSinceStart() {
    const text = fs.readFileSync(srv.file('broker.stderr'), 'utf8');
    return text.slice(text.lastIndexOf('--- start'));
}

/* a few channel names, cut short, for messages */
function short(names) {
    return names.slice(0, 3).map((n) => `${n.slice(0, 20)}...`).join(', ');
}

function count(text, re) {
    return (text.match(re) || []).length;
}

test('kill -9 and restart of the broker under 100 sockets x 1,000 long channel names: streamed re-announce, no attach/detach loop, every channel occupied again', { timeout: 180000 * SLOW }, async (t) => {
    const t0 = Date.now();
    const all = await connectAlternating(srv, SOCKETS + 2);
    const socks = all.slice(0, SOCKETS);
    const expected = new Set();
    await Promise.all(socks.map(async (ws, i) => {
        const names = [];
        for (let k = 0; k < CHANNELS; k++) {
            names.push(channelName(i, k));
        }
        await subscribeMany(ws, names);
        for (const n of names) {
            expected.add(n);
        }
    }));

    /* presence: one member on each worker; one of them leaves during the
       re-announce, when the new broker may not know it yet */
    const [stay, leave] = all.slice(SOCKETS);
    await joinPresence(srv, stay, 'presence-big', 'stay', { n: 1 });
    await joinPresence(srv, leave, 'presence-big', 'leave', { n: 2 });
    expected.add('presence-big');
    t.diagnostic(`${SOCKETS} sockets x ${CHANNELS} channels subscribed in ${Date.now() - t0} ms`);

    await waitUntil(async () => (await occupied()).size === expected.size, 20000,
                    'the first broker knows every channel');

    /* kill -9: no goodbye on the control socket, the segment left behind */
    const old = srv.broker;
    old.stopping = true;
    old.kill('SIGKILL');
    await old.exited;

    /* down long enough for the workers' reconnect backoff to reach its
       longest interval */
    await sleep(1500);
    await srv.startBroker();
    const tBack = Date.now();
    const workers = srv.workerPids();

    /* both workers attach within a second of the broker being back */
    await waitUntil(() => workers.every((pid) => new RegExp(`nginx worker pid ${pid} attached`).test(brokerLogSinceStart())),
                    1000, () => `workers attached:\n${brokerLogSinceStart()}`, 10);
    const tAttached = Date.now() - tBack;

    /* while the announcement streams: sockets close, a socket subscribes,
       a presence member leaves */
    const gone = socks.slice(SOCKETS - 4);
    for (const ws of gone) {
        ws.close();
    }
    leave.sendJson({ event: 'pusher:unsubscribe', data: { channel: 'presence-big' } });
    const late = await connectRaw(srv);
    await subscribeRaw(late, 'late-channel');

    const want = new Set(expected);
    for (const ws of gone) {
        const i = socks.indexOf(ws);
        for (let k = 0; k < CHANNELS; k++) {
            want.delete(channelName(i, k));
        }
    }
    want.add('late-channel');

    let have = new Set();
    await waitUntil(async () => {
        have = await occupied();
        return have.size === want.size && [...want].every((c) => have.has(c));
    }, 15000, () => {
        const missing = [...want].filter((c) => !have.has(c));
        const extra = [...have].filter((c) => !want.has(c));
        return `broker reports ${have.size} occupied channels, want ${want.size}: `
            + `${missing.length} missing (${short(missing)}), ${extra.length} extra (${short(extra)})\n`
            + `${brokerLogSinceStart().slice(-2000)}`;
    }, 500);
    const tOccupied = Date.now() - tBack;

    /* nothing detached: one attach per worker, no loop */
    await sleep(500);
    const log = brokerLogSinceStart();
    assert.equal(count(log, /attached, wake slot/g), workers.length, `attach lines:\n${log.slice(-3000)}`);
    assert.equal(count(log, / detached| dropped/g), 0, `detach lines:\n${log.slice(-3000)}`);

    /* the channel's members are exact: the leave of a member the broker did
       not know yet was harmless, the one that stayed is there */
    const users = await signedRequest(srv, 'GET', `/apps/${srv.appId}/channels/presence-big/users`);
    assert.equal(users.status, 200, users.body);
    assert.deepEqual(users.json, { users: [{ id: 'stay' }] });

    const info = await signedRequest(srv, 'GET', `/apps/${srv.appId}/channels/${channelName(2, 999)}`);
    assert.deepEqual(info.json, { occupied: true });

    /* and the rings deliver: one event to the first channel of each socket */
    const live = socks.slice(0, SOCKETS - 4);
    for (let from = 0; from < live.length; from += 50) {
        const part = live.slice(from, from + 50);
        await sdkTrigger(api, part.map((ws) => channelName(socks.indexOf(ws), 0)), 'after', { ok: 1 });
    }
    for (const ws of live) {
        await ws.expectText(eventFrame('after', channelName(socks.indexOf(ws), 0), { ok: 1 }), { timeout: 5000 });
    }

    t.diagnostic(`broker back: both workers attached after ${tAttached} ms, every channel occupied after ${tOccupied} ms`);
    for (const ws of [...live, late, stay, leave]) {
        ws.close();
    }
});

test('a broker that stops reading its control socket: the uplink stays bounded, the link drops cleanly, and the state is announced again once the broker reads', { timeout: 120000 * SLOW }, async () => {
    /* 4 sockets per worker, each subscribing to 1,000 long names and
       leaving them 8 times, then keeping 500: ~15 MB of OCCUPANCY per
       worker, more than it queues for a broker that does not read (8 MiB
       and what its own subscriptions could say at once) */
    const socks = await connectAlternating(srv, 8);
    const name = (i, k) => {
        const head = `stop-${i}-${String(k).padStart(4, '0')}-`;
        return head + 'y'.repeat(NAME_LEN - head.length);
    };
    const broker = srv.broker;
    const stuck = /the broker does not read its control socket/g;
    const before = count(srv.errorLog(), stuck);

    process.kill(broker.pid, 'SIGSTOP');
    try {
        await Promise.all(socks.map(async (ws, i) => {
            const names = [];
            for (let k = 0; k < CHANNELS; k++) {
                names.push(name(i, k));
            }
            for (let round = 0; round < 8; round++) {
                await subscribeMany(ws, names);
                for (const channel of names) {
                    ws.sendJson({ event: 'pusher:unsubscribe', data: { channel } });
                }
            }
            await subscribeMany(ws, names.slice(0, CHANNELS / 2));
        }));
        await waitUntil(() => count(srv.errorLog(), stuck) >= before + 2, 5000,
                        () => `both workers give up on the stopped broker:\n${srv.tail('error.log')}`);
    } finally {
        process.kill(broker.pid, 'SIGCONT');
    }

    const want = new Set();
    for (let i = 0; i < socks.length; i++) {
        for (let k = 0; k < CHANNELS / 2; k++) {
            want.add(name(i, k));
        }
    }
    let have = new Set();
    await waitUntil(async () => {
        have = new Set([...(await occupied())].filter((c) => c.startsWith('stop-')));
        return have.size === want.size && [...want].every((c) => have.has(c));
    }, 10000, () => `broker reports ${have.size} of the ${want.size} channels`, 500);

    for (const ws of socks) {
        ws.close();
    }
});

/*
 * A reconnect storm of presence subscriptions: 20,000 joins (100 sockets x
 * 200 channels, one member each) wait for a broker that is down, then are answered in one
 * burst of ring records.  Each answer finds its subscription through the
 * worker's index of pending subscriptions; a scan of the whole pending
 * queue per answer (O(n^2), with a socket id formatted per entry) kept a
 * worker busy for seconds.
 */
test('20,000 presence joins waiting for a broker are all answered within 3 s of its return', { timeout: 120000 * SLOW }, async (t) => {
    const SOCKS = 100;
    const PER = 200;
    await srv.stopBroker();
    const socks = await connectAlternating(srv, SOCKS);
    for (const [i, ws] of socks.entries()) {
        for (let k = 0; k < PER; k++) {
            sendPresenceSubscribe(srv, ws, `presence-storm-${i}-${k}`, `u${i}`);
        }
    }
    await sleep(500);
    const t0 = Date.now();
    await srv.startBroker();
    const ok = (ws) => ws.frames.filter((f) => f.text && f.text.startsWith('{"event":"pusher_internal:subscription_succeeded"')).length;
    await waitUntil(() => socks.every((ws) => ok(ws) === PER || ws.ended), 30000 * SLOW,
        () => `${socks.reduce((n, ws) => n + ok(ws), 0)} of ${SOCKS * PER} joins answered`, 50);
    const took = Date.now() - t0;
    for (const ws of socks) {
        assert.equal(ws.ended, false, ws.dump());
    }
    t.diagnostic(`${SOCKS * PER} joins answered ${took} ms after the broker was started`);
    assert.ok(took < 3000 * SLOW, `took ${took} ms`);
    for (const ws of socks) {
        ws.close();
    }
});
