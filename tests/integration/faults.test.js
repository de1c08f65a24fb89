'use strict';
// The fault suite: what a connected client observes when something fails
// while events are being published.  Each event carries a sequence number;
// each subscriber must receive every event that was answered 200 exactly
// once and in order, or be told to reconnect (pusher:error 4200, close
// 4200) and then receive every event published after it had subscribed
// again.  Loss is zero or announced, never silent.
//
//   - the broker killed with SIGKILL and started again while publishing,
//     with public, private and cache subscribers on both workers;
//   - a worker killed with SIGKILL while publishing (its clients lose the
//     TCP connection and reconnect; the others see nothing);
//   - nginx -s reload twice while publishing to 500 subscribers.
//
// (Overruns and stopped workers: overrun.test.js; the broker dying under
// scripts/run: scripts_run.test.js; the big re-announce after a restart:
// reannounce.test.js.)

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, sleep, waitUntil, SLOW } = require('./lib/harness');
const {
    connectRaw, connectAlternating, subscribeRaw, channelAuth, sdk, pusherJs, pjsSubscribe, eventFrame,
} = require('./lib/clients');

let srv;
let api;

before(async () => {
    srv = await startServer();
    api = sdk(srv, { timeout: 2000 });
});

after(async () => {
    await srv.stop();
});

/*
 * Publishes "n" events numbered 0, 1, ... on channels every `every` ms
 * until stop() is called; resolves the numbers answered 200 (the others
 * were refused or failed, e.g. while the broker was down).
 */
function publisher(channels, every = 20) {
    let stopped = false;
    const ok = [];
    const done = (async () => {
        for (let n = 0; !stopped; n++) {
            try {
                const r = await api.trigger(channels, 'n', { n });
                if (r.status === 200) {
                    ok.push(n);
                }
            } catch {
                /* not answered 200: need not arrive */
            }
            await sleep(every);
        }
        return ok;
    })();
    return {
        ok,
        stop: async () => {
            stopped = true;
            return done;
        },
    };
}

/* the "n" of every event frame a raw socket got on channel, in order */
function numbersOf(ws, channel) {
    return ws.frames
        .filter((f) => f.text && f.text.startsWith('{"event":"n",'))
        .map((f) => JSON.parse(f.text))
        .filter((e) => e.channel === channel)
        .map((e) => JSON.parse(e.data).n);
}

test('broker killed with SIGKILL and restarted while publishing: every event answered 200 reaches every public, private and cache subscriber on both workers once, in order; no socket is closed', { timeout: 60000 * SLOW }, async (t) => {
    const channels = ['pub', 'private-p', 'cache-c'];
    const socks = await connectAlternating(srv, 4);
    for (const ws of socks) {
        for (const ch of channels) {
            const auth = ch.startsWith('private-') ? channelAuth(srv.key, srv.secret, ws.socketId, ch) : '';
            ws.sendJson({ event: 'pusher:subscribe', data: { auth, channel: ch } });
            await ws.waitEvent('pusher_internal:subscription_succeeded', ch);
        }
    }
    const pub = publisher(channels);
    await sleep(400);
    srv.allowLog(/\[crit\] .*connect\(\) to unix:\S*\/api\.sock failed/);
    srv.broker.stopping = true;
    srv.broker.kill('SIGKILL');
    await srv.broker.exited;
    const t0 = Date.now();
    await sleep(300);
    await srv.startBroker();
    await srv.waitUp(5000);
    /* publishing goes on until both workers are back and a second more */
    await waitUntil(() => pub.ok.length > 0 && pub.ok[pub.ok.length - 1] > 0 && Date.now() - t0 > 1500, 10000, 'publishing resumed');
    await sleep(1000);
    const ok = await pub.stop();
    const last = ok[ok.length - 1];
    /* let the last events arrive */
    await waitUntil(() => socks.every((ws) => channels.every((ch) => numbersOf(ws, ch).includes(last))), 5000,
        () => `the last event (${last}) did not reach every subscriber`);
    for (const ws of socks) {
        assert.equal(ws.closeFrame, null, ws.dump());
        assert.equal(ws.ended, false);
        for (const ch of channels) {
            const got = numbersOf(ws, ch);
            const missing = ok.filter((n) => !got.includes(n));
            assert.deepEqual(missing, [], `${ws.socketId} on ${ch} missed events answered 200: ${missing}`);
            assert.deepEqual(got, [...got].sort((x, y) => x - y), `${ws.socketId} on ${ch}: out of order`);
            assert.equal(new Set(got).size, got.length, `${ws.socketId} on ${ch}: duplicates`);
        }
    }
    t.diagnostic(`${ok.length} events answered 200 (of ${last + 1} sent), all delivered; broker back after ${Date.now() - t0} ms`);
});

test('a worker killed with SIGKILL while publishing: the other worker\'s clients get every event; the killed worker\'s pusher-js clients reconnect, resubscribe and get every event after that', { timeout: 60000 * SLOW }, async (t) => {
    const clients = [];
    /* 8, and more until both workers have some (reuseport may put 8 on one) */
    const onBoth = () => new Set(clients.map((c) => c.connection.socket_id.split('.')[0])).size === 2;
    for (let i = 0; i < 8 || !onBoth(); i++) {
        assert.ok(i < 40, 'pusher-js clients all landed on one worker');
        const c = await pusherJs(srv);
        c.got = [];
        const ch = await pjsSubscribe(c, 'wk');
        ch.bind('n', (d) => c.got.push(d.n));
        c.subscribedAt = [];
        ch.bind('pusher:subscription_succeeded', () => c.subscribedAt.push(Date.now()));
        clients.push(c);
    }
    const workers = [...new Set(clients.map((c) => Number(c.connection.socket_id.split('.')[0])))];
    assert.equal(workers.length, 2, 'clients on both workers');
    const victim = workers[0];
    const onVictim = clients.filter((c) => Number(c.connection.socket_id.split('.')[0]) === victim);
    const others = clients.filter((c) => !onVictim.includes(c));

    const pub = publisher(['wk']);
    await sleep(300);
    await srv.killWorker(victim);
    /* the killed worker's clients are back on a live worker */
    await waitUntil(() => onVictim.every((c) => c.connection.state === 'connected' && c.subscribedAt.length > 0
                                              && Number(c.connection.socket_id.split('.')[0]) !== victim),
                    10000, 'the killed worker\'s clients reconnected and resubscribed');
    const resubscribed = Date.now();
    await sleep(500);
    const ok = await pub.stop();
    await sleep(300);
    for (const c of others) {
        assert.deepEqual(ok.filter((n) => !c.got.includes(n)), [], 'a client of the live worker missed events');
        assert.equal(c.states.filter((s) => s.current === 'connecting').length, 0, 'a client of the live worker reconnected');
    }
    for (const c of onVictim) {
        /* every event published after its resubscription */
        const after = c.got.length ? c.got[c.got.length - 1] : -1;
        assert.ok(after >= ok[ok.length - 1], `${c.connection.socket_id} did not get the last event`);
        assert.deepEqual(c.got, [...new Set(c.got)].sort((x, y) => x - y), 'no duplicates, in order');
    }
    const lost = Math.min(...onVictim.map((c) => c.states.find((s) => s.current === 'connecting').t));
    t.diagnostic(`${ok.length} events answered 200; the killed worker's ${onVictim.length} clients resubscribed within ${resubscribed - lost} ms of losing their connection`);
    for (const c of clients) {
        c.disconnect();
    }
});

test('nginx -s reload twice while publishing to 500 subscribers: the app is unchanged, its sockets stay on the old workers and get every event answered 200, once, in order', { timeout: 90000 * SLOW }, async (t) => {
    const socks = [];
    for (let i = 0; i < 500; i++) {
        const ws = await connectRaw(srv);
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: 'rl' } });
        socks.push(ws);
    }
    for (const ws of socks) {
        await ws.waitEvent('pusher_internal:subscription_succeeded', 'rl');
    }
    const pub = publisher(['rl']);
    await sleep(200);
    await srv.reload();
    await sleep(300);
    await srv.reload();
    await sleep(300);
    const ok = await pub.stop();
    const last = ok[ok.length - 1];
    await waitUntil(() => socks.every((ws) => numbersOf(ws, 'rl').includes(last)), 10000, 'the last event everywhere');
    for (const ws of socks) {
        assert.deepEqual(numbersOf(ws, 'rl'), ok, `${ws.socketId}`);
        assert.equal(ws.closeFrame, null);
    }
    t.diagnostic(`${ok.length} events to 500 subscribers across two reloads, none lost`);
    for (const ws of socks) {
        ws.close();
    }
});
