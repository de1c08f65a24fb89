'use strict';
// pusher_internal:subscription_count (subscription_count on) and watchlist
// events (online/offline of the users in a signed-in user's watchlist),
// both kept by the broker for all workers.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { before, after, describe } = require('node:test');

const { startServer, test, waitUntil, sleep } = require('./lib/harness');
const { connectRaw, pusherJs, succeededFrame } = require('./lib/clients');

function userAuth(srv, socketId, userData) {
    const hex = crypto.createHmac('sha256', srv.secret)
        .update(`${socketId}::user::${userData}`).digest('hex');
    return `${srv.key}:${hex}`;
}

function countFrame(channel, n) {
    return JSON.stringify({
        event: 'pusher_internal:subscription_count',
        channel,
        data: JSON.stringify({ subscription_count: n }),
    });
}

function texts(ws) {
    return ws.frames.filter((f) => f.opcode === 1).map((f) => f.text);
}

describe('subscription_count', () => {
    let srv;

    before(async () => {
        srv = await startServer({ app: { subscription_count: 'on' } });
    });

    after(async () => {
        await srv.stop();
    });

    test('subscribers on both workers get the total count, coalesced to at most one per second', async () => {
        const socks = [];
        for (let i = 0; i < 6; i++) {
            const ws = await connectRaw(srv);
            ws.sendText('{"event":"pusher:subscribe","data":{"channel":"counted"}}');
            socks.push(ws);
        }
        /* the latest count reaches everyone within the coalescing window */
        await waitUntil(() => socks.every((ws) => texts(ws).includes(countFrame('counted', 6))),
                        4000, () => `count 6 everywhere:\n${socks.map((w) => w.dump()).join('\n')}`);
        for (const ws of socks) {
            assert.ok(texts(ws).includes(succeededFrame('counted')));
        }

        /* a burst of changes within a second makes at most two frames */
        const before = texts(socks[0]).filter((t) => t.includes('subscription_count')).length;
        socks[5].close();
        socks[4].close();
        await waitUntil(() => texts(socks[0]).includes(countFrame('counted', 4)), 4000,
                        () => socks[0].dump());
        const after = texts(socks[0]).filter((t) => t.includes('subscription_count')).length;
        assert.ok(after - before <= 2, `${after - before} count frames for 2 changes`);
        for (const ws of socks.slice(0, 4)) {
            ws.close();
        }
    });

    test('pusher-js emits pusher:subscription_count', async () => {
        const a = await pusherJs(srv);
        const b = await pusherJs(srv);
        const seen = [];
        a.subscribe('pjs-counted').bind('pusher:subscription_count', (d) => seen.push(d.subscription_count));
        b.subscribe('pjs-counted');
        await waitUntil(() => seen.includes(2), 4000, () => `counts seen: ${seen}`);
        a.disconnect();
        b.disconnect();
    });

    test('no subscription_count on presence channels', async () => {
        const ws = await connectRaw(srv);
        const cd = JSON.stringify({ user_id: 'p1' });
        const hex = crypto.createHmac('sha256', srv.secret)
            .update(`${ws.socketId}:presence-nocount:${cd}`).digest('hex');
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: `${srv.key}:${hex}`, channel_data: cd, channel: 'presence-nocount' },
        }));
        await ws.waitEvent('pusher_internal:subscription_succeeded', 'presence-nocount');
        await sleep(1500);
        assert.ok(!texts(ws).some((t) => t.includes('subscription_count')), ws.dump());
        ws.close();
    });
});

describe('subscription_count off (the default)', () => {
    let srv;

    before(async () => {
        srv = await startServer();
    });

    after(async () => {
        await srv.stop();
    });

    test('no subscription_count frames', async () => {
        const a = await connectRaw(srv);
        const b = await connectRaw(srv);
        a.sendText('{"event":"pusher:subscribe","data":{"channel":"quiet"}}');
        b.sendText('{"event":"pusher:subscribe","data":{"channel":"quiet"}}');
        await a.waitEvent('pusher_internal:subscription_succeeded', 'quiet');
        await sleep(1200);
        assert.ok(!texts(a).some((t) => t.includes('subscription_count')), a.dump());
        a.close();
        b.close();
    });
});

describe('watchlist', () => {
    let srv;

    before(async () => {
        srv = await startServer();
    });

    after(async () => {
        await srv.stop();
    });

    async function signin(user) {
        const ws = await connectRaw(srv);
        const user_data = JSON.stringify(user);
        ws.sendText(JSON.stringify({
            event: 'pusher:signin',
            data: { auth: userAuth(srv, ws.socketId, user_data), user_data },
        }));
        await ws.waitEvent('pusher:signin_success');
        return ws;
    }

    function watchFrames(ws) {
        return texts(ws).map((t) => JSON.parse(t))
            .filter((j) => j.event === 'pusher_internal:watchlist_events')
            .map((j) => ({ channel: j.channel, data: JSON.parse(j.data) }));
    }

    test('online once on the first socket, offline once after the last, on the watcher\'s #server-to-user channel', async () => {
        const watcher = await signin({ id: 'w1', watchlist: ['friend'] });
        await sleep(200);
        assert.deepEqual(watchFrames(watcher), [], 'nobody online yet');

        const tab1 = await signin({ id: 'friend' });
        await waitUntil(() => watchFrames(watcher).length === 1, 3000, () => watcher.dump());
        assert.deepEqual(watchFrames(watcher)[0], {
            channel: '#server-to-user-w1',
            data: { events: [{ name: 'online', user_ids: ['friend'] }] },
        });

        const tab2 = await signin({ id: 'friend' });
        await sleep(300);
        assert.equal(watchFrames(watcher).length, 1, 'a second tab is not a second online');

        tab1.close();
        await sleep(300);
        assert.equal(watchFrames(watcher).length, 1, 'one tab left: still online');

        tab2.close();
        await waitUntil(() => watchFrames(watcher).length === 2, 3000, () => watcher.dump());
        assert.deepEqual(watchFrames(watcher)[1], {
            channel: '#server-to-user-w1',
            data: { events: [{ name: 'offline', user_ids: ['friend'] }] },
        });
        watcher.close();
    });

    test('signing in reports which users of the watchlist are online', async () => {
        const a = await signin({ id: 'alice' });
        const b = await signin({ id: 'bob', watchlist: ['alice', 'carol'] });
        await waitUntil(() => watchFrames(b).length === 1, 3000, () => b.dump());
        assert.deepEqual(watchFrames(b)[0].data, { events: [{ name: 'online', user_ids: ['alice'] }] });
        a.close();
        b.close();
    });

    test('pusher-js watchlist emits online and offline', async () => {
        const handler = (user) => ({
            customHandler: ({ socketId }, cb) => {
                const user_data = JSON.stringify(user);
                cb(null, { auth: userAuth(srv, socketId, user_data), user_data });
            },
        });
        const w = await pusherJs(srv, { userAuthentication: handler({ id: 'pw', watchlist: ['pf'] }) });
        const events = [];
        w.user.watchlist.bind('online', (e) => events.push(['online', e.user_ids]));
        w.user.watchlist.bind('offline', (e) => events.push(['offline', e.user_ids]));
        w.signin();
        await waitUntil(() => w.user.serverToUserChannel && w.user.serverToUserChannel.subscribed, 3000, 'signed in');
        const f = await pusherJs(srv, { userAuthentication: handler({ id: 'pf' }) });
        f.signin();
        await waitUntil(() => events.length === 1, 3000, () => JSON.stringify(events));
        f.disconnect();
        await waitUntil(() => events.length === 2, 3000, () => JSON.stringify(events));
        assert.deepEqual(events, [['online', ['pf']], ['offline', ['pf']]]);
        w.disconnect();
    });
});
