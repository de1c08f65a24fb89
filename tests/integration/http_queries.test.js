'use strict';
// The Pusher HTTP API's queries against state kept for all workers:
// GET /channels, /channels/{name}, /channels/{name}/users, "info" on
// triggers, and terminate_connections, through the pusher SDK.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { before, after, describe } = require('node:test');

const { startServer, test, waitUntil } = require('./lib/harness');
const { connectAlternating, connectRaw, sdk } = require('./lib/clients');
const { buildFrame, OP } = require('./lib/rawws');

function hmac(secret, s) {
    return crypto.createHmac('sha256', secret).update(s).digest('hex');
}

async function json(res) {
    assert.equal(res.status, 200);
    return JSON.parse(await res.text());
}

describe('HTTP API queries', () => {
    let srv;
    let api;

    before(async () => {
        srv = await startServer({ app: { cache_ttl: '60s' } });
        api = sdk(srv);
    });

    after(async () => {
        await srv.stop();
    });

    async function presence(channel, userId, info) {
        const ws = await connectRaw(srv);
        const cd = JSON.stringify({ user_id: userId, user_info: info });
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: `${srv.key}:${hmac(srv.secret, `${ws.socketId}:${channel}:${cd}`)}`,
                    channel_data: cd, channel },
        }));
        await ws.waitEvent('pusher_internal:subscription_succeeded', channel);
        return ws;
    }

    async function publicSub(channel) {
        const ws = await connectRaw(srv);
        ws.sendText(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
        await ws.waitEvent('pusher_internal:subscription_succeeded', channel);
        return ws;
    }

    test('channels, channel info and users are exact across both workers', async () => {
        const socks = [];
        for (let i = 0; i < 4; i++) {
            socks.push(await publicSub('orders'));
        }
        socks.push(await presence('presence-room', 'u1', { n: 1 }));
        socks.push(await presence('presence-room', 'u1', { n: 1 }));
        socks.push(await presence('presence-room', 'u2', null));
        const workers = new Set(socks.map((s) => s.worker));

        // every socket has its subscription_succeeded: the counts are exact
        assert.deepEqual(await json(await api.get({ path: '/channels/orders', params: { info: 'subscription_count' } })),
                         { occupied: true, subscription_count: 4 });

        assert.deepEqual(await json(await api.get({ path: '/channels' })),
                         { channels: { orders: {}, 'presence-room': {} } });
        assert.deepEqual(await json(await api.get({ path: '/channels',
                                                    params: { filter_by_prefix: 'presence-', info: 'user_count' } })),
                         { channels: { 'presence-room': { user_count: 2 } } });
        assert.deepEqual(await json(await api.get({ path: '/channels/presence-room', params: { info: 'user_count' } })),
                         { occupied: true, user_count: 2 });
        assert.deepEqual(await json(await api.get({ path: '/channels/presence-room/users' })),
                         { users: [{ id: 'u1' }, { id: 'u2' }] });
        assert.deepEqual(await json(await api.get({ path: '/channels/nobody-here' })), { occupied: false });

        const bad = await api.get({ path: '/channels', params: { info: 'user_count' } }).catch((e) => e);
        assert.equal(bad.status, 400);

        const res = await api.trigger(['orders', 'presence-room'], 'e', {}, { info: 'subscription_count,user_count' });
        assert.deepEqual(await json(res), {
            channels: { orders: { subscription_count: 4 }, 'presence-room': { user_count: 2, subscription_count: 3 } },
        });
        /* both on a presence channel, as Pusher documents */
        assert.deepEqual(await json(await api.get({ path: '/channels/presence-room', params: { info: 'user_count,subscription_count' } })),
                         { occupied: true, user_count: 2, subscription_count: 3 });

        for (const s of socks) {
            s.close();
        }
        await waitUntil(async () => {
            const r = await json(await api.get({ path: '/channels' }));
            return Object.keys(r.channels).length === 0;
        }, 3000, 'no channel occupied after all closed');
        if (workers.size < 2) {
            console.log('note: all sockets landed on one worker');
        }
    });

    // What a client was told is what the API says: once a socket has
    // pusher_internal:subscription_succeeded, a GET sent right then counts
    // it, whichever worker holds the socket and whichever serves the GET.
    test('a GET sent right after subscription_succeeded counts the subscription', async () => {
        const socks = await connectAlternating(srv, 2);
        // busy workers: sockets that send pings without end keep each
        // worker's event loop full, as a production load does
        const noise = await connectAlternating(srv, 8);
        const ping = buildFrame(OP.TEXT, JSON.stringify({ event: 'pusher:ping', data: {} }));
        const burst = Buffer.concat(Array(512).fill(ping));
        const pump = setInterval(() => {
            for (const n of noise) {
                if (n.sock.writableLength === 0) {
                    n.sock.write(burst);
                }
            }
        }, 2);
        const wrong = [];
        for (let i = 0; i < 60; i++) {
            const ws = socks[i % 2];
            const channel = `right-now-${i}`;
            ws.sendText(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
            await ws.waitEvent('pusher_internal:subscription_succeeded', channel);
            const one = await json(await api.get({ path: `/channels/${channel}`,
                                                   params: { info: 'subscription_count' } }));
            const all = await json(await api.get({ path: '/channels', params: { filter_by_prefix: channel } }));
            if (!one.occupied || one.subscription_count !== 1 || !(channel in all.channels)) {
                wrong.push(`${channel} on ${ws.worker}: ${JSON.stringify(one)} ${JSON.stringify(all)}`);
            }
        }
        clearInterval(pump);
        for (const n of noise) {
            n.close();
        }
        assert.deepEqual(wrong, []);

        // a trigger's "info" reads the same state
        const ws = socks[1];
        ws.sendText(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'right-now-info' } }));
        await ws.waitEvent('pusher_internal:subscription_succeeded', 'right-now-info');
        const res = await api.trigger('right-now-info', 'e', {}, { info: 'subscription_count' });
        assert.deepEqual(await json(res), { channels: { 'right-now-info': { subscription_count: 1 } } });
        for (const s of socks) {
            s.close();
        }
    });

    // The same when the broker is slow to read: the uplink message and the
    // GET wait for it together, and the GET is answered after the message.
    test('GETs that wait for a stopped broker count the subscriptions made before them', async () => {
        const socks = await connectAlternating(srv, 2);
        const broker = srv.broker;
        const gets = [];
        for (let round = 0; round < 5; round++) {
            process.kill(broker.pid, 'SIGSTOP');
            try {
                for (let i = 0; i < 20; i++) {
                    const ws = socks[i % 2];
                    const channel = `stopped-broker-${round}-${i}`;
                    ws.sendText(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
                    await ws.waitEvent('pusher_internal:subscription_succeeded', channel);
                    gets.push(api.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } })
                        .then(json).then((r) => `${channel}: ${JSON.stringify(r)}`));
                }
                await new Promise((r) => setTimeout(r, 100));
            } finally {
                process.kill(broker.pid, 'SIGCONT');
            }
            await Promise.all(gets);
        }
        const answers = await Promise.all(gets);
        assert.deepEqual(answers, answers.map((a) => `${a.split(':')[0]}: {"occupied":true,"subscription_count":1}`));
        for (const s of socks) {
            s.close();
        }
    });

    test('terminate_connections closes the user\'s signed-in sockets and presence memberships with 4009, nobody else', async () => {
        const signed = await connectRaw(srv);
        const user_data = JSON.stringify({ id: 'victim' });
        signed.sendText(JSON.stringify({
            event: 'pusher:signin',
            data: { auth: `${srv.key}:${hmac(srv.secret, `${signed.socketId}::user::${user_data}`)}`, user_data },
        }));
        await signed.waitEvent('pusher:signin_success');
        const member = await presence('presence-t', 'victim', null);
        const bystander = await presence('presence-t', 'other', null);

        const res = await api.terminateUserConnections('victim');
        assert.equal(res.status, 200);

        for (const ws of [signed, member]) {
            const e = await ws.waitEvent('pusher:error');
            assert.deepEqual(JSON.parse(e.data), { code: 4009, message: 'You got disconnected by the app' });
            await ws.next({ skip: true, pred: (f) => f.opcode === 8 && f.code === 4009, what: 'close 4009' });
        }
        const removed = await bystander.waitEvent('pusher_internal:member_removed', 'presence-t');
        assert.equal(removed.data, JSON.stringify({ user_id: 'victim' }));
        bystander.sendText('{"event":"pusher:ping","data":{}}');
        await bystander.waitEvent('pusher:pong');
        bystander.close();
    });
});
