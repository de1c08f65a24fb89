'use strict';
// Tests for presence channels across both nginx workers: the
// subscription_succeeded member list, member_added / member_removed exactly
// once per user_id (first connection in, last connection out), the user_id
// "1" == 1 rule, auth and channel_data errors, the member and user_info
// limits, laravel-echo join().here/joining/leaving, a SIGKILLed worker and a
// broker restart.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');


const { startServer, test, waitUntil, sleep, SLOW } = require('./lib/harness');
const {
    connectRaw,
    connectAlternating,
    subscribeRaw,
    channelAuth,
    presenceChannelData,
    sendPresenceSubscribe,
    joinPresence,
    presenceSucceededFrame,
    memberAddedFrame,
    memberRemovedFrame,
    subscriptionErrorFrame,
    sdk,
    probeUntilDelivered,
    PONG,
    echoClient,
} = require('./lib/clients');

/* an app with small limits next to the default one */
const SMALL = { id: '5151', key: 'small-key', secret: 'small-secret', app: { presence_max_members: 3, presence_max_user_info: 100 } };

let srv;
let api;

before(async () => {
    srv = await startServer({ extraApps: [SMALL] });
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

const SMALL_APP = { key: SMALL.key, secret: SMALL.secret };

async function ping(ws) {
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
}

/* every socket in list gets exactly this frame next */
async function allGet(list, text) {
    for (const ws of list) {
        await ws.expectText(text, { timeout: 3000 });
    }
}

async function noneGet(list, ms = 250) {
    await Promise.all(list.map((ws) => ws.expectNothing(ms)));
}

function authErrorFrame(channel) {
    return subscriptionErrorFrame(channel, 'AuthError', 'Invalid signature', 401);
}

test('first member: subscription_succeeded has the exact presence data (string id with info, number id without)', async () => {
    const a = await connectRaw(srv);
    sendPresenceSubscribe(srv, a, 'presence-first', '1', { name: 'A' });
    await a.expectText('{"event":"pusher_internal:subscription_succeeded","channel":"presence-first","data":"{\\"presence\\":{\\"count\\":1,\\"ids\\":[\\"1\\"],\\"hash\\":{\\"1\\":{\\"name\\":\\"A\\"}}}}"}');
    const b = await connectRaw(srv);
    sendPresenceSubscribe(srv, b, 'presence-first-n', 7);
    await b.expectText('{"event":"pusher_internal:subscription_succeeded","channel":"presence-first-n","data":"{\\"presence\\":{\\"count\\":1,\\"ids\\":[7],\\"hash\\":{\\"7\\":null}}}"}');
    await noneGet([a, b]);
    await ping(a);
    a.close();
    b.close();
});

test('second member on the other worker: list of both, exact member_added to the first only', async () => {
    const [a, b] = await connectAlternating(srv, 2);
    const ch = 'presence-pair';
    sendPresenceSubscribe(srv, a, ch, 'alice', { name: 'Alice' });
    await a.expectText(presenceSucceededFrame(ch, [['alice', { name: 'Alice' }]]));
    const p = await joinPresence(srv, b, ch, 42, { name: 'Bob', tags: ['x', 1, null, true] });
    assert.deepEqual(p, {
        count: 2,
        ids: ['alice', 42],
        hash: { alice: { name: 'Alice' }, 42: { name: 'Bob', tags: ['x', 1, null, true] } },
    });
    await a.expectText(memberAddedFrame(ch, 42, { name: 'Bob', tags: ['x', 1, null, true] }));
    /* never to the joining socket itself, and only once */
    await noneGet([a, b]);
    b.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
    await a.expectText(memberRemovedFrame(ch, 42));
    await noneGet([a, b]);
    a.close();
    b.close();
});

test('one user with two connections (one per worker) + observer: one member_added, one member_removed after the last leaves', async () => {
    const [obs, tab1, tab2, other] = await connectAlternating(srv, 4);
    /* tab1 and tab2 are on different workers */
    assert.notEqual(tab1.worker, tab2.worker);
    const ch = 'presence-tabs';
    await joinPresence(srv, obs, ch, 'obs', { n: 0 });
    await joinPresence(srv, other, ch, 'other', null);
    await obs.expectText(memberAddedFrame(ch, 'other', null));
    const p1 = await joinPresence(srv, tab1, ch, 'u', { n: 1 });
    assert.deepEqual(p1, { count: 3, ids: ['obs', 'other', 'u'], hash: { obs: { n: 0 }, other: null, u: { n: 1 } } });
    await allGet([obs, other], memberAddedFrame(ch, 'u', { n: 1 }));
    const p2 = await joinPresence(srv, tab2, ch, 'u', { n: 1 });
    assert.deepEqual(p2, p1, 'second tab sees the same list, the user once');
    /* no member_added for the second connection, to anybody (tab1 included) */
    await noneGet([obs, other, tab1, tab2], 300);
    /* first tab leaves: the user is still present */
    tab1.sendClose(1000);
    await tab1.expectClose(1000);
    await noneGet([obs, other, tab2], 300);
    /* last tab leaves */
    tab2.sendClose(1000);
    await allGet([obs, other], memberRemovedFrame(ch, 'u'));
    await noneGet([obs, other], 300);
    /* a newcomer sees the remaining two */
    const late = await connectRaw(srv);
    assert.deepEqual(await joinPresence(srv, late, ch, 'late'), {
        count: 3, ids: ['obs', 'other', 'late'], hash: { obs: { n: 0 }, other: null, late: null },
    });
    for (const ws of [obs, other, tab1, tab2, late]) {
        ws.close();
    }
});

test('a second connection of a present user gets subscription_succeeded as promptly as the first (< 300 ms)', async () => {
    const ch = 'presence-prompt';
    const [a, b, c] = await connectAlternating(srv, 3);
    for (const [ws, what] of [[a, 'first connection'], [b, 'second connection, other worker'], [c, 'third connection, first worker']]) {
        const t = Date.now();
        await joinPresence(srv, ws, ch, 'prompt', { p: 1 }, { timeout: 3000 });
        const ms = Date.now() - t;
        assert.ok(ms < 300 * SLOW, `${what}: subscription_succeeded took ${ms} ms`);
    }
    for (const ws of [a, b, c]) {
        ws.close();
    }
});

test('closing a socket that is a member of two presence channels removes it from both; a refused subscriber leaves silently', async () => {
    const [obs, m, refused] = await connectAlternating(srv, 3);
    for (const ch of ['presence-two-a', 'presence-two-b']) {
        await joinPresence(srv, obs, ch, 'obs');
        await joinPresence(srv, m, ch, 'm', { both: true });
        await obs.expectText(memberAddedFrame(ch, 'm', { both: true }));
    }
    /* a subscriber refused for a bad signature is no member */
    const cd = presenceChannelData('intruder');
    refused.sendJson({ event: 'pusher:subscribe', data: { auth: channelAuth(srv.key, 'wrong', refused.socketId, 'presence-two-a', cd), channel_data: cd, channel: 'presence-two-a' } });
    await refused.expectText(authErrorFrame('presence-two-a'));
    refused.close();
    m.close();
    const got = [(await obs.nextEvent()).raw, (await obs.nextEvent()).raw].sort();
    assert.deepEqual(got, [memberRemovedFrame('presence-two-a', 'm'), memberRemovedFrame('presence-two-b', 'm')].sort());
    await obs.expectNothing(300);
    obs.close();
});

test('channel_data with whitespace (Python json.dumps style) and escaped characters in the user_id: same values in every frame', async () => {
    const ch = 'presence-escapes';
    const [a, b] = await connectAlternating(srv, 2);
    await joinPresence(srv, a, ch, 'first');
    const id = 'ü "quoted" \\ /';
    const info = { name: 'Zoë', nested: { list: [1, 2.5, 'x'] } };
    const cd = `{"user_id": ${JSON.stringify(id)}, "user_info": {"name": "Zo\\u00eb", "nested": {"list": [1, 2.5, "x"]}}}`;
    assert.deepEqual(JSON.parse(cd), { user_id: id, user_info: info });
    const p = await joinPresence(srv, b, ch, undefined, undefined, { channelData: cd });
    assert.deepEqual(p, { count: 2, ids: ['first', id], hash: { first: null, [id]: info } });
    const e = await a.nextEvent();
    assert.equal(e.event, 'pusher_internal:member_added', e.raw);
    assert.equal(typeof e.data, 'string', e.raw);
    assert.deepEqual(e.dataParsed, { user_id: id, user_info: info }, e.raw);
    b.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
    const r = await a.nextEvent();
    assert.equal(r.event, 'pusher_internal:member_removed', r.raw);
    assert.deepEqual(r.dataParsed, { user_id: id }, r.raw);
    a.close();
    b.close();
});

test('presence membership is per app: the same channel name in another app is another channel', async () => {
    const ch = 'presence-iso';
    const a = await connectRaw(srv);
    const b = await connectRaw(srv, { key: SMALL.key });
    await joinPresence(srv, a, ch, 'u');
    const p = await joinPresence(srv, b, ch, 'v', undefined, SMALL_APP);
    assert.deepEqual(p, { count: 1, ids: ['v'], hash: { v: null } });
    await a.expectNothing(200);
    b.close();
    await a.expectNothing(200);
    a.close();
});

test('subscribing twice to the same presence channel from one socket: no second member_added, one member_removed', async () => {
    const ch = 'presence-twice';
    const [obs, ws] = await connectAlternating(srv, 2);
    await joinPresence(srv, obs, ch, 'obs');
    await joinPresence(srv, ws, ch, 'dup', { d: 1 });
    await obs.expectText(memberAddedFrame(ch, 'dup', { d: 1 }));
    sendPresenceSubscribe(srv, ws, ch, 'dup', { d: 1 });
    await ping(ws);
    await obs.expectNothing(200);
    ws.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
    await obs.expectText(memberRemovedFrame(ch, 'dup'));
    ws.close();
    await obs.expectNothing(300);
    obs.close();
});

test('two tabs of a user joining and leaving at the same moment on both workers: one member_added, one member_removed', async () => {
    const ch = 'presence-race';
    const [obs, t1, t2] = await connectAlternating(srv, 3);
    await joinPresence(srv, obs, ch, 'obs');
    for (let round = 0; round < 5; round++) {
        const user = `racer-${round}`;
        /* both subscribes leave in the same event-loop turn */
        sendPresenceSubscribe(srv, t1, ch, user);
        sendPresenceSubscribe(srv, t2, ch, user);
        for (const t of [t1, t2]) {
            const e = await t.waitEvent('pusher_internal:subscription_succeeded', ch);
            assert.deepEqual(e.dataParsed.presence.ids, ['obs', user], e.raw);
        }
        await obs.expectText(memberAddedFrame(ch, user, null));
        await obs.expectNothing(150);
        t1.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
        t2.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
        await obs.expectText(memberRemovedFrame(ch, user));
        await obs.expectNothing(150);
        /* the tabs were never told about each other */
        for (const t of [t1, t2]) {
            assert.ok(!t.frames.some((f) => f.text && f.text.includes('member_')), t.dump());
        }
    }
    for (const ws of [obs, t1, t2]) {
        ws.close();
    }
});

/*
 * A member's view: the ids of its subscription_succeeded, then each
 * member_added / member_removed applied in order.  Returns {view, faults}.
 */
function memberView(ws, ch, self) {
    const faults = [];
    let view = null;
    for (const f of ws.frames) {
        if (!f.text) {
            continue;
        }
        const j = JSON.parse(f.text);
        if (j.channel !== ch) {
            continue;
        }
        const d = typeof j.data === 'string' ? JSON.parse(j.data) : j.data;
        if (j.event === 'pusher_internal:subscription_succeeded') {
            view = new Set(d.presence.ids.map(String));
        } else if (j.event === 'pusher_internal:member_added') {
            const id = String(d.user_id);
            if (view === null) {
                faults.push(`member_added ${id} before subscription_succeeded`);
            } else if (id === self) {
                faults.push(`member_added for its own user ${id}`);
            } else if (view.has(id)) {
                faults.push(`member_added ${id} already in the list`);
            } else {
                view.add(id);
            }
        } else if (j.event === 'pusher_internal:member_removed') {
            const id = String(d.user_id);
            if (view === null || !view.has(id)) {
                faults.push(`member_removed ${id} not in the list`);
            } else {
                view.delete(id);
            }
        }
    }
    return { view: view && [...view].sort(), faults };
}

test('8 users joining at the same moment on both workers: every member ends with the full list, no duplicate or self member_added', async () => {
    const socks = await connectAlternating(srv, 8);
    const users = socks.map((_, i) => `c${i}`);
    const bad = [];
    for (let round = 0; round < 4; round++) {
        const ch = `presence-converge-${round}`;
        for (const [i, ws] of socks.entries()) {
            sendPresenceSubscribe(srv, ws, ch, users[i]);
        }
        await waitUntil(() => socks.every((ws) => {
            const v = memberView(ws, ch, '');
            return v.view && v.view.length === 8;
        }), 1500, () => `views: ${socks.map((ws, i) => `${i}: ${JSON.stringify(memberView(ws, ch, users[i]).view)}`).join('; ')}`).catch(() => {});
        await sleep(150);
        for (const [i, ws] of socks.entries()) {
            const { view, faults } = memberView(ws, ch, users[i]);
            if (JSON.stringify(view) !== JSON.stringify([...users].sort()) || faults.length) {
                bad.push(`round ${round} socket ${i} (${ws.socketId}): view ${JSON.stringify(view)} faults ${JSON.stringify(faults)}`);
            }
        }
    }
    assert.deepEqual(bad, []);
    for (const ws of socks) {
        ws.close();
    }
});

test('joins and leaves at the same moment on both workers: every remaining member ends with the exact list (no ghost, no missing member)', async () => {
    const socks = await connectAlternating(srv, 8);
    const users = socks.map((_, i) => `g${i}`);
    const bad = [];
    for (let round = 0; round < 4; round++) {
        const ch = `presence-churn-${round}`;
        /* 0..3 are members; then 4..7 join while 0 and 1 leave */
        for (let i = 0; i < 4; i++) {
            /* the earlier frames are judged by memberView(), not read in order */
            socks[i].cursor = socks[i].frames.length;
            await joinPresence(srv, socks[i], ch, users[i]);
        }
        for (const i of [4, 5, 6, 7]) {
            sendPresenceSubscribe(srv, socks[i], ch, users[i]);
        }
        for (const i of [0, 1]) {
            socks[i].sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
        }
        const want = JSON.stringify(users.slice(2).sort());
        const stay = [2, 3, 4, 5, 6, 7];
        await waitUntil(() => stay.every((i) => JSON.stringify(memberView(socks[i], ch, '').view) === want), 1500, '').catch(() => {});
        await sleep(150);
        for (const i of stay) {
            const { view, faults } = memberView(socks[i], ch, users[i]);
            if (JSON.stringify(view) !== want || faults.length) {
                bad.push(`round ${round} socket ${i} (${socks[i].socketId}): view ${JSON.stringify(view)} faults ${JSON.stringify(faults)}`);
            }
        }
    }
    assert.deepEqual(bad, []);
    for (const ws of socks) {
        ws.close();
    }
});

const LEAVES = [
    ['pusher:unsubscribe', (ws, ch) => ws.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } })],
    ['a WebSocket close frame', (ws) => ws.sendClose(1000)],
    ['a TCP FIN without a close frame', (ws) => ws.sock.destroy()],
    ['a TCP RST', (ws) => ws.reset()],
];

for (const [how, leave] of LEAVES) {
    test(`member_removed after ${how}, to the remaining members on both workers, exactly once`, async () => {
        const ch = `presence-leave-${how.replace(/[^a-z]/gi, '')}`;
        const [m0, m1, leaver] = await connectAlternating(srv, 3);
        await joinPresence(srv, m0, ch, 'm0');
        await joinPresence(srv, m1, ch, 'm1');
        await m0.expectText(memberAddedFrame(ch, 'm1', null));
        await joinPresence(srv, leaver, ch, 1001, { who: 'leaver' });
        await allGet([m0, m1], memberAddedFrame(ch, 1001, { who: 'leaver' }));
        leave(leaver, ch);
        await allGet([m0, m1], memberRemovedFrame(ch, 1001));
        await noneGet([m0, m1], 300);
        if (how === 'pusher:unsubscribe') {
            /* no reply to the leaver, and its connection stays usable */
            await ping(leaver);
            /* re-joining announces the user again */
            await joinPresence(srv, leaver, ch, 1001, { who: 'leaver' });
            await allGet([m0, m1], memberAddedFrame(ch, 1001, { who: 'leaver' }));
        }
        for (const ws of [m0, m1, leaver]) {
            ws.close();
        }
    });
}

test('user ids "1" and 1 are the same user', async () => {
    const ch = 'presence-same-id';
    const [obs, s, n] = await connectAlternating(srv, 3);
    await joinPresence(srv, obs, ch, 'obs');
    await joinPresence(srv, s, ch, '1', { v: 's' });
    await obs.expectText(memberAddedFrame(ch, '1', { v: 's' }));
    const p = await joinPresence(srv, n, ch, 1, { v: 'n' });
    assert.equal(p.count, 2, JSON.stringify(p));
    assert.equal(p.ids.length, 2, JSON.stringify(p));
    assert.deepEqual(p.ids.map(String), ['obs', '1'], JSON.stringify(p));
    assert.deepEqual(Object.keys(p.hash).sort(), ['1', 'obs'], JSON.stringify(p));
    /* the number form is not a new member */
    await noneGet([obs, s], 300);
    s.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
    await noneGet([obs, n], 300);
    n.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
    const e = await obs.nextEvent();
    assert.equal(e.event, 'pusher_internal:member_removed', e.raw);
    assert.equal(e.channel, ch, e.raw);
    assert.equal(typeof e.data, 'string', e.raw);
    assert.equal(String(e.dataParsed.user_id), '1', e.raw);
    await noneGet([obs], 300);
    for (const ws of [obs, s, n]) {
        ws.close();
    }
});

test('member lists stay exact across workers while 6 users join and 2 leave', async () => {
    const ch = 'presence-six';
    const socks = await connectAlternating(srv, 8);
    const users = socks.map((_, i) => [i % 2 ? 100 + i : `user-${i}`, { i }]);
    for (let i = 0; i < 6; i++) {
        const p = await joinPresence(srv, socks[i], ch, ...users[i]);
        const want = users.slice(0, i + 1);
        assert.equal(p.count, i + 1, JSON.stringify(p));
        assert.deepEqual(p.ids, want.map(([id]) => id), `ids in first-join order for joiner ${i}`);
        assert.deepEqual(p.hash, Object.fromEntries(want.map(([id, info]) => [String(id), info])));
        await allGet(socks.slice(0, i), memberAddedFrame(ch, ...users[i]));
    }
    await noneGet(socks.slice(0, 6), 200);
    /* one leaver per worker */
    socks[1].close();
    await allGet([0, 2, 3, 4, 5].map((i) => socks[i]), memberRemovedFrame(ch, users[1][0]));
    socks[4].sendClose(1001);
    await allGet([0, 2, 3, 5].map((i) => socks[i]), memberRemovedFrame(ch, users[4][0]));
    await noneGet([0, 2, 3, 5].map((i) => socks[i]), 200);
    /* newcomers on each worker */
    const left = [0, 2, 3, 5].map((i) => users[i]);
    for (const k of [6, 7]) {
        const p = await joinPresence(srv, socks[k], ch, ...users[k]);
        const want = [...left, ...users.slice(6, k + 1)];
        assert.deepEqual(p, {
            count: want.length,
            ids: want.map(([id]) => id),
            hash: Object.fromEntries(want.map(([id, info]) => [String(id), info])),
        }, `newcomer ${k} on worker ${socks[k].worker}`);
    }
    for (const ws of socks) {
        ws.close();
    }
});

const BAD_AUTHS = [
    ['a wrong secret', (ws, ch, cd) => channelAuth(srv.key, 'wrong', ws.socketId, ch, cd)],
    ['a private-channel signature (no channel_data)', (ws, ch) => channelAuth(srv.key, srv.secret, ws.socketId, ch)],
    ['a signature over other channel_data', (ws, ch) => channelAuth(srv.key, srv.secret, ws.socketId, ch, presenceChannelData('admin'))],
    ['another socket\'s signature', (ws, ch, cd) => channelAuth(srv.key, srv.secret, '1.1', ch, cd)],
    ['no auth', () => ''],
];

for (const [name, mk] of BAD_AUTHS) {
    test(`presence subscribe with ${name} -> exact AuthError 401, nobody told, connection open`, async () => {
        const ch = 'presence-auth';
        const [obs, ws] = await connectAlternating(srv, 2);
        await joinPresence(srv, obs, ch, 'obs');
        const cd = presenceChannelData('u1', { n: 1 });
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: mk(ws, ch, cd), channel_data: cd, channel: ch } });
        await ws.expectText(authErrorFrame(ch));
        await ping(ws);
        await obs.expectNothing(200);
        /* it did not join: a correct subscribe afterwards is a first join */
        const p = await joinPresence(srv, ws, ch, 'u1', { n: 1 });
        assert.deepEqual(p.ids, ['obs', 'u1']);
        await obs.expectText(memberAddedFrame(ch, 'u1', { n: 1 }));
        obs.close();
        ws.close();
    });
}

const BAD_CHANNEL_DATA = [
    ['not JSON', '{"user_id":'],
    ['a JSON array', '["1"]'],
    ['a JSON string', '"1"'],
    ['an object without user_id', '{"user_info":{"a":1}}'],
    ['user_id null', '{"user_id":null}'],
    ['user_id true', '{"user_id":true}'],
    ['user_id an object', '{"user_id":{"id":1}}'],
    ['user_id an array', '{"user_id":[1]}'],
];

for (const [name, cd] of BAD_CHANNEL_DATA) {
    test(`correctly signed channel_data that is ${name} -> AuthError 401, connection open`, async () => {
        const ch = 'presence-bad-cd';
        const ws = await connectRaw(srv);
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, ch, cd), channel_data: cd, channel: ch } });
        const e = await ws.nextEvent();
        assert.equal(e.event, 'pusher:subscription_error', e.raw);
        assert.equal(e.channel, ch, e.raw);
        assert.equal(typeof e.data, 'string', `data must be a JSON string: ${e.raw}`);
        assert.equal(e.dataParsed.type, 'AuthError', e.raw);
        assert.equal(e.dataParsed.status, 401, e.raw);
        assert.equal(typeof e.dataParsed.error, 'string', e.raw);
        await ping(ws);
        ws.close();
    });
}

test('presence subscribe without channel_data -> AuthError 401, connection open', async () => {
    const ch = 'presence-no-cd';
    const ws = await connectRaw(srv);
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, ch), channel: ch } });
    const e = await ws.nextEvent();
    assert.equal(e.event, 'pusher:subscription_error', e.raw);
    assert.equal(e.channel, ch, e.raw);
    assert.equal(e.dataParsed.type, 'AuthError', e.raw);
    assert.equal(e.dataParsed.status, 401, e.raw);
    await ping(ws);
    ws.close();
});

const LIMIT_FRAME = (ch) => subscriptionErrorFrame(ch, 'LimitReached', 'The maximum members per presence channel limit was reached', 4100);

test('presence_max_members 3: a 4th distinct user gets LimitReached 4100; another tab of a member still joins; a freed slot is reusable', async () => {
    const ch = 'presence-full';
    const socks = await connectAlternating(srv, 6, { key: SMALL.key });
    for (let i = 0; i < 3; i++) {
        await joinPresence(srv, socks[i], ch, `m${i}`, undefined, SMALL_APP);
    }
    await socks[0].expectText(memberAddedFrame(ch, 'm1', null));
    await allGet(socks.slice(0, 2), memberAddedFrame(ch, 'm2', null));
    /* socks[3] is on the other worker than socks[2] */
    sendPresenceSubscribe(srv, socks[3], ch, 'm3', undefined, SMALL_APP);
    await socks[3].expectText(LIMIT_FRAME(ch));
    await ping(socks[3]);
    await noneGet(socks.slice(0, 3), 200);
    /* a second connection of m0 is not a new member */
    const p = await joinPresence(srv, socks[4], ch, 'm0', undefined, SMALL_APP);
    assert.deepEqual(p.ids, ['m0', 'm1', 'm2']);
    await noneGet(socks.slice(0, 3), 200);
    /* m1 leaves: m3 fits now */
    socks[1].close();
    await allGet([socks[0], socks[2], socks[4]], memberRemovedFrame(ch, 'm1'));
    const p3 = await joinPresence(srv, socks[3], ch, 'm3', undefined, SMALL_APP);
    assert.deepEqual(p3.ids, ['m0', 'm2', 'm3']);
    /* and the channel is full again */
    sendPresenceSubscribe(srv, socks[5], ch, 'm5', undefined, SMALL_APP);
    await socks[5].expectText(LIMIT_FRAME(ch));
    for (const ws of socks) {
        ws.close();
    }
});

test('default presence_max_members is 100: the 101st distinct user gets LimitReached 4100', async () => {
    const ch = 'presence-hundred';
    const socks = [];
    for (let i = 0; i < 101; i++) {
        socks.push(await connectRaw(srv));
    }
    for (let i = 0; i < 100; i++) {
        sendPresenceSubscribe(srv, socks[i], ch, i);
    }
    for (let i = 0; i < 100; i++) {
        await socks[i].waitEvent('pusher_internal:subscription_succeeded', ch, { timeout: 5000 });
    }
    sendPresenceSubscribe(srv, socks[100], ch, 100);
    await socks[100].expectText(LIMIT_FRAME(ch));
    assert.ok(new Set(socks.map((s) => s.worker)).size === 2, 'both workers involved');
    for (const ws of socks) {
        ws.close();
    }
});

function userInfoOfSize(n) {
    /* JSON.stringify(result).length === n */
    const info = { pad: '' };
    info.pad = 'x'.repeat(n - JSON.stringify(info).length);
    assert.equal(JSON.stringify(info).length, n);
    return info;
}

async function expectLimit4301(ws, ch) {
    const e = await ws.nextEvent();
    assert.equal(e.event, 'pusher:subscription_error', e.raw);
    assert.equal(e.channel, ch, e.raw);
    assert.equal(typeof e.data, 'string', e.raw);
    assert.equal(e.dataParsed.type, 'LimitReached', e.raw);
    assert.equal(e.dataParsed.status, 4301, e.raw);
    await ping(ws);
}

test('default presence_max_user_info 2k: 1900-byte user_info joins, 2200-byte gets LimitReached 4301', async () => {
    const ch = 'presence-info';
    const [a, b] = await connectAlternating(srv, 2);
    const big = userInfoOfSize(1900);
    const p = await joinPresence(srv, a, ch, 'a', big);
    assert.deepEqual(p.hash, { a: big });
    sendPresenceSubscribe(srv, b, ch, 'b', userInfoOfSize(2200));
    await expectLimit4301(b, ch);
    await a.expectNothing(200);
    a.close();
    b.close();
});

test('presence_max_user_info 100: 80-byte user_info joins, 150-byte gets LimitReached 4301', async () => {
    const ch = 'presence-info-small';
    const [a, b] = await connectAlternating(srv, 2, { key: SMALL.key });
    await joinPresence(srv, a, ch, 'a', userInfoOfSize(80), SMALL_APP);
    sendPresenceSubscribe(srv, b, ch, 'b', userInfoOfSize(150), SMALL_APP);
    await expectLimit4301(b, ch);
    await a.expectNothing(200);
    a.close();
    b.close();
});

test('a presence channel and the HTTP API: triggered events reach members on both workers', async () => {
    const ch = 'presence-http';
    const [a, b] = await connectAlternating(srv, 2);
    await joinPresence(srv, a, ch, 'a');
    await joinPresence(srv, b, ch, 'b');
    await a.expectText(memberAddedFrame(ch, 'b', null));
    await api.trigger(ch, 'news', { x: 1 });
    await allGet([a, b], JSON.stringify({ event: 'news', channel: ch, data: '{"x":1}' }));
    a.close();
    b.close();
});

/* ---- laravel-echo ---- */

function echoAs(userId, info) {
    return echoClient(srv, userId, info);
}

/* an Echo client for userId on worker (or on the other one than notOn) */
async function echoOn(userId, info, { on, notOn }) {
    for (let i = 0; i < 40; i++) {
        const e = await echoAs(userId, info);
        if ((on === undefined || e.worker === on) && (notOn === undefined || e.worker !== notOn)) {
            return e;
        }
        e.disconnect();
    }
    throw new Error('40 Echo clients all on the same worker');
}

function joinEcho(e, name) {
    const log = { here: [], joining: [], leaving: [], errors: [] };
    e.join(name)
        .here((users) => log.here.push(users))
        .joining((u) => log.joining.push(u))
        .leaving((u) => log.leaving.push(u))
        .error((err) => log.errors.push(err));
    return log;
}

const byId = (a, b) => String(a.id).localeCompare(String(b.id));

test('Echo join().here/joining/leaving across workers; a second tab of a user does not re-announce it', async () => {
    const alice = { id: 1, name: 'Alice' };
    const bob = { id: 2, name: 'Bob' };
    const ea = await echoAs(1, alice);
    const la = joinEcho(ea, 'room');
    await waitUntil(() => la.here.length === 1, 3000, () => `alice here(): ${JSON.stringify(la)}`);
    assert.deepEqual(la.here[0], [alice]);

    const eb1 = await echoOn(2, bob, { notOn: ea.worker });
    const lb1 = joinEcho(eb1, 'room');
    await waitUntil(() => lb1.here.length === 1 && la.joining.length === 1, 3000, () => `bob1 ${JSON.stringify(lb1)} alice ${JSON.stringify(la)}`);
    assert.deepEqual([...lb1.here[0]].sort(byId), [alice, bob]);
    assert.deepEqual(la.joining, [bob]);

    const eb2 = await echoOn(2, bob, { on: ea.worker });
    const lb2 = joinEcho(eb2, 'room');
    await waitUntil(() => lb2.here.length === 1, 3000, () => `bob2 ${JSON.stringify(lb2)}`);
    assert.deepEqual([...lb2.here[0]].sort(byId), [alice, bob]);
    await sleep(300);
    assert.deepEqual(la.joining, [bob], 'no second joining() for the second tab');
    assert.deepEqual(lb1.joining, [], 'bob\'s first tab is not told about bob');

    eb1.disconnect();
    await sleep(400);
    assert.deepEqual(la.leaving, [], 'bob still has a tab open');
    eb2.disconnect();
    await waitUntil(() => la.leaving.length === 1, 3000, () => `alice leaving(): ${JSON.stringify(la.leaving)}`);
    await sleep(300);
    assert.deepEqual(la.leaving, [bob]);
    assert.deepEqual([la.errors, lb1.errors, lb2.errors], [[], [], []]);
    ea.disconnect();
});

/* ---- failures of a worker and of the broker ---- */

test('SIGKILL of a worker: members only on it are removed once, users with a connection on the other worker stay', async () => {
    const ch = 'presence-kill';
    /* even index: worker K (survives), odd: worker D (killed) */
    const s = await connectAlternating(srv, 6);
    const plan = [['A', 0], ['B', 1], ['C', 2], ['D', 3], ['X', 4], ['X', 5]];
    for (const [user, i] of plan) {
        await joinPresence(srv, s[i], ch, user, { u: user });
    }
    const dead = s[1].worker;
    const survivors = [s[0], s[2], s[4]];
    /* skip the member_added frames */
    await sleep(200);
    for (const ws of s) {
        ws.cursor = ws.frames.length;
    }
    await srv.killWorker(dead);
    for (const ws of survivors) {
        const got = [];
        for (let k = 0; k < 2; k++) {
            const e = await ws.nextEvent({ timeout: 5000, what: 'member_removed for B and D' });
            got.push(e.raw);
        }
        assert.deepEqual(got.sort(), [memberRemovedFrame(ch, 'B'), memberRemovedFrame(ch, 'D')].sort(), `survivor ${ws.socketId}\n${ws.dump()}`);
    }
    /* X still has its connection on the surviving worker: no member_removed */
    await noneGet(survivors, 400);
    /* newcomers on both workers (one of them the respawned one) see A, C, X */
    const [n0, n1] = await connectAlternating(srv, 2);
    const p0 = await joinPresence(srv, n0, ch, 'E');
    assert.deepEqual(p0.ids, ['A', 'C', 'X', 'E'], `newcomer on worker ${n0.worker}`);
    await allGet(survivors, memberAddedFrame(ch, 'E', null));
    const p1 = await joinPresence(srv, n1, ch, 'F');
    assert.deepEqual(p1.ids, ['A', 'C', 'X', 'E', 'F'], `newcomer on worker ${n1.worker}`);
    await allGet([...survivors, n0], memberAddedFrame(ch, 'F', null));
    for (const ws of [...s, n0, n1]) {
        ws.close();
    }
});

test('broker restart: members stay connected, memberships are re-announced, a new joiner sees everyone', async () => {
    const ch = 'presence-restart';
    const s = await connectAlternating(srv, 5);
    const users = ['A', 'B', 'C', 'D', 'B'];
    for (let i = 0; i < 5; i++) {
        await subscribeRaw(s[i], 'restart-probe');
        await joinPresence(srv, s[i], ch, users[i]);
    }
    await sleep(200);
    const base = s.map((ws) => ws.frames.length);
    await srv.restartBroker();
    await probeUntilDelivered(api, 'restart-probe', s, 8000);
    await sleep(200);
    for (const [i, ws] of s.entries()) {
        assert.ok(!ws.ended, `socket ${i} stayed connected`);
        const removed = ws.frames.slice(base[i]).filter((f) => f.text && f.text.includes('member_removed'));
        assert.deepEqual(removed.map((f) => f.text), [], `socket ${i} must not see member_removed across a broker restart`);
    }
    const [n] = await connectAlternating(srv, 1);
    const p = await joinPresence(srv, n, ch, 'E');
    assert.deepEqual([...p.ids].sort(), ['A', 'B', 'C', 'D', 'E'], JSON.stringify(p));
    assert.equal(p.count, 5, JSON.stringify(p));
    const addedE = memberAddedFrame(ch, 'E', null);
    for (const ws of s) {
        await ws.next({ skip: true, pred: (f) => f.text === addedE, what: addedE });
    }
    /* B has two connections: closing one announces nothing, closing both once */
    const mark = s.map((ws) => ws.frames.length);
    s[1].close();
    await sleep(300);
    for (const i of [0, 2, 3, 4]) {
        assert.ok(!s[i].frames.slice(mark[i]).some((f) => f.text && f.text.includes('member_removed')), `early member_removed on ${i}:\n${s[i].dump()}`);
    }
    s[4].close();
    for (const ws of [s[0], s[2], s[3], n]) {
        await ws.waitEvent('pusher_internal:member_removed', ch, { timeout: 3000 });
    }
    await sleep(300);
    for (const ws of [s[0], s[2], s[3], n]) {
        const removed = ws.frames.filter((f) => f.text && f.text.includes('member_removed'));
        assert.deepEqual(removed.map((f) => f.text), [memberRemovedFrame(ch, 'B')], ws.dump());
    }
    for (const ws of [...s, n]) {
        ws.close();
    }
});
