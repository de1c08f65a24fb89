'use strict';
// Tests for client events (client-*, Echo whisper) across both nginx
// workers: relay to every other subscriber with data unchanged, user_id on
// presence channels, never echoed, the pusher:error 4301/4009 refusals, the
// per-connection rate limit and the per-app client_events mode.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');


const { startServer, test, waitUntil, sleep, SLOW } = require('./lib/harness');
const {
    connectRaw,
    connectAlternating,
    subscribeRaw,
    channelAuth,
    presenceChannelData,
    joinPresence,
    errorFrame,
    eventFrame,
    sdk,
    sdkTrigger,
    PONG,
    echoClient,
} = require('./lib/clients');
const { buildFrame, OP } = require('./lib/rawws');

const NONE = { id: '6001', key: 'none-key', secret: 'none-secret', app: { client_events: 'none' } };
const ALL = { id: '6002', key: 'all-key', secret: 'all-secret', app: { client_events: 'all' } };
const RATE3 = { id: '6003', key: 'rate-key', secret: 'rate-secret', app: { client_event_rate: 3 } };
const LIMIT = { id: '6004', key: 'limit-key', secret: 'limit-secret', app: { rate_limit: '5 1s' } };
const LIMIT_TERM = { id: '6005', key: 'limitt-key', secret: 'limitt-secret', app: { rate_limit: '5 terminate' } };

let srv;
let api;

before(async () => {
    srv = await startServer({ extraApps: [NONE, ALL, RATE3, LIMIT, LIMIT_TERM] });
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

const ERR_PUBLIC = errorFrame(4301, 'Client events are only allowed on private and presence channels');
const ERR_ENCRYPTED = errorFrame(4301, 'Client events are not allowed on encrypted channels');
const ERR_NOT_MEMBER = errorFrame(4009, 'The client is not a member of the specified channel');
const ERR_NAME = errorFrame(4301, 'Event name is too long');
const ERR_RATE = errorFrame(4301, 'Client event rejected due to rate limit');
const ERR_DISABLED = errorFrame(4301, 'The app does not have client messaging enabled');

async function ping(ws) {
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
}

async function allGet(list, text) {
    for (const ws of list) {
        await ws.expectText(text, { timeout: 3000 });
    }
}

async function noneGet(list, ms = 250) {
    await Promise.all(list.map((ws) => ws.expectNothing(ms)));
}

async function subPrivate(ws, ch, app = srv) {
    await subscribeRaw(ws, ch, channelAuth(app.key, app.secret, ws.socketId, ch));
}

/* the relayed frame: {"event","channel","data"} with data as the same JSON value */
function relayed(event, channel, dataJson, userId) {
    return `{"event":${JSON.stringify(event)},"channel":${JSON.stringify(channel)},"data":${dataJson}${userId === undefined ? '' : `,"user_id":${JSON.stringify(userId)}`}}`;
}

test('private channel: a client event reaches every other subscriber on both workers, exact bytes, not the sender', async () => {
    const ch = 'private-chat';
    const s = await connectAlternating(srv, 4);
    for (const ws of s) {
        await subPrivate(ws, ch);
    }
    s[0].sendText('{"event":"client-typing","channel":"private-chat","data":{"id":123}}');
    await allGet(s.slice(1), '{"event":"client-typing","channel":"private-chat","data":{"id":123}}');
    await s[0].expectNothing(300);
    /* and from a socket on the other worker */
    s[1].sendText('{"event":"client-typing","channel":"private-chat","data":{"id":124}}');
    await allGet([s[0], s[2], s[3]], '{"event":"client-typing","channel":"private-chat","data":{"id":124}}');
    await noneGet(s, 200);
    for (const ws of s) {
        ws.close();
    }
});

test('a client event in a BINARY frame with the byte 0xFF in its data: the sender is closed 1007, nobody else receives anything', async () => {
    const ch = 'private-bin';
    const s = await connectAlternating(srv, 4);
    for (const ws of s) {
        await subPrivate(ws, ch);
    }
    const bad = Buffer.concat([
        Buffer.from('{"event":"client-x","channel":"private-bin","data":{"v":"'),
        Buffer.from([0xff]),
        Buffer.from('"}}'),
    ]);
    s[0].write(buildFrame(OP.BINARY, bad));
    await s[0].expectClose(1007, 'Invalid UTF-8 in a binary message');
    await noneGet(s.slice(1), 300);
    for (const ws of s.slice(1)) {
        await ping(ws);
    }
    /* valid UTF-8 in a binary frame is taken as text, as Reverb and soketi do */
    s[1].write(buildFrame(OP.BINARY, '{"event":"client-x","channel":"private-bin","data":{"v":"\u00e9"}}'));
    await allGet([s[2], s[3]], '{"event":"client-x","channel":"private-bin","data":{"v":"\u00e9"}}');
    for (const ws of s) {
        ws.close();
    }
});

const ERR_LIMIT = errorFrame(4301, 'Rate limit exceeded');

test('rate_limit 5 1s (Reverb\'s): 5 messages of any kind per window from the first; the 6th gets 4301 and is dropped, the socket stays; the next window accepts again', async () => {
    const ws = await connectRaw(srv, { key: LIMIT.key });
    for (let i = 0; i < 4; i++) {
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
    }
    /* an invalid message counts too */
    ws.sendText('{nope');
    await ws.expectText(errorFrame(4200, 'Invalid message format'));
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: 'dropped' } });
    await ws.expectText(ERR_LIMIT);
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(ERR_LIMIT);
    await ws.expectNothing(100);
    await sleep(1000);
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: 'accepted' } });
    await ws.expectText(JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel: 'accepted', data: '{}' }));
    ws.close();
});

test('rate_limit 5 terminate: the 6th message gets 4301 and the close 4301; WebSocket pings do not count', async () => {
    const ws = await connectRaw(srv, { key: LIMIT_TERM.key });
    for (let i = 0; i < 20; i++) {
        ws.send(OP.PING, 'x');
    }
    for (let i = 0; i < 5; i++) {
        ws.sendJson({ event: 'pusher:ping', data: {} });
    }
    const seen = [];
    for (;;) {
        const f = await ws.next();
        if (f.opcode === OP.PONG) {
            continue;
        }
        seen.push(f.text);
        if (seen.length === 1) {
            break;
        }
    }
    /* five pusher:pings: one or more pusher:pong (one reply waits at most) */
    assert.equal(seen[0], PONG);
    ws.sendJson({ event: 'pusher:ping', data: {} });
    const e = await ws.waitEvent('pusher:error');
    assert.equal(e.raw, ERR_LIMIT);
    await ws.expectClose(4301, 'Rate limit exceeded');
});

const DATA_VALUES = [
    ['a nested object', '{"a":{"b":[1,2,{"c":null}]},"s":"x\\"y","u":"\\u00e9"}'],
    ['an array', '[1,"two",{"three":3}]'],
    ['a string', '"just text"'],
    ['a string holding JSON', '"{\\"id\\":1}"'],
    ['a number', '42'],
    ['an empty object', '{}'],
];

for (const [name, dataJson] of DATA_VALUES) {
    test(`client event data that is ${name} is relayed as the same JSON value (pusher-js field order)`, async () => {
        const ch = 'private-data';
        const [a, b] = await connectAlternating(srv, 2);
        await subPrivate(a, ch);
        await subPrivate(b, ch);
        /* pusher-js sends {"event","data","channel"} */
        a.sendText(`{"event":"client-x","data":${dataJson},"channel":"${ch}"}`);
        const f = await b.next({ what: 'the relayed client event' });
        const got = JSON.parse(f.text);
        assert.deepEqual(Object.keys(got), ['event', 'channel', 'data'], f.text);
        assert.deepEqual(got.data, JSON.parse(dataJson), f.text);
        /* the bytes as sent, or re-serialized compactly */
        const want = [relayed('client-x', ch, dataJson), relayed('client-x', ch, JSON.stringify(JSON.parse(dataJson)))];
        assert.ok(want.includes(f.text), `exact bytes: got\n    ${f.text}\nwant one of\n    ${want.join('\n    ')}`);
        await a.expectNothing(200);
        a.close();
        b.close();
    });
}

test('presence channel: user_id (string form) is appended; receivers on both workers; not echoed', async () => {
    const ch = 'presence-room';
    const s = await connectAlternating(srv, 3);
    await joinPresence(srv, s[0], ch, 7, { n: 'seven' });
    await joinPresence(srv, s[1], ch, 'bob');
    await joinPresence(srv, s[2], ch, 'carol');
    await sleep(200);
    for (const ws of s) {
        ws.cursor = ws.frames.length;
    }
    s[0].sendText('{"event":"client-typing","channel":"presence-room","data":{"id":1}}');
    await allGet([s[1], s[2]], '{"event":"client-typing","channel":"presence-room","data":{"id":1},"user_id":"7"}');
    s[1].sendText('{"event":"client-typing","data":{"id":2},"channel":"presence-room"}');
    await allGet([s[0], s[2]], '{"event":"client-typing","channel":"presence-room","data":{"id":2},"user_id":"bob"}');
    /* a forged user_id from the client is not relayed as such */
    s[2].sendText('{"event":"client-typing","channel":"presence-room","data":{"id":3},"user_id":"admin"}');
    await allGet([s[0], s[1]], '{"event":"client-typing","channel":"presence-room","data":{"id":3},"user_id":"carol"}');
    await noneGet(s, 200);
    for (const ws of s) {
        ws.close();
    }
});

test('client event on a public channel -> 4301 error, nothing delivered, connection open', async () => {
    const [a, b] = await connectAlternating(srv, 2);
    await subscribeRaw(a, 'public-chat');
    await subscribeRaw(b, 'public-chat');
    a.sendText('{"event":"client-typing","channel":"public-chat","data":{"id":1}}');
    await a.expectText(ERR_PUBLIC);
    await ping(a);
    await b.expectNothing(200);
    a.close();
    b.close();
});

test('client event on a private-encrypted- channel -> 4301 error, nothing delivered', async () => {
    const ch = 'private-encrypted-chat';
    const [a, b] = await connectAlternating(srv, 2);
    for (const ws of [a, b]) {
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, ch), channel: ch } });
        /* whatever the subscription answers (encrypted channels are not this test's topic) */
        await ws.next({ what: 'an answer to the encrypted subscribe' });
    }
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"ciphertext":"x","nonce":"y"}}`);
    await a.expectText(ERR_ENCRYPTED);
    await ping(a);
    await b.expectNothing(200);
    a.close();
    b.close();
});

test('client event from a socket not subscribed to the channel -> 4009 error, nothing delivered (also after unsubscribe)', async () => {
    const ch = 'private-members';
    const [a, b, c] = await connectAlternating(srv, 3);
    await subPrivate(b, ch);
    await subPrivate(c, ch);
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":1}}`);
    await a.expectText(ERR_NOT_MEMBER);
    await ping(a);
    /* subscribed to a different channel does not help */
    await subPrivate(a, 'private-other');
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":2}}`);
    await a.expectText(ERR_NOT_MEMBER);
    /* after unsubscribing */
    c.sendJson({ event: 'pusher:unsubscribe', data: { channel: ch } });
    await ping(c);
    c.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":3}}`);
    await c.expectText(ERR_NOT_MEMBER);
    await b.expectNothing(200);
    /* a failed private subscribe is not membership either */
    a.sendJson({ event: 'pusher:subscribe', data: { auth: channelAuth(srv.key, 'wrong', a.socketId, ch), channel: ch } });
    const e = await a.nextEvent();
    assert.equal(e.event, 'pusher:subscription_error', e.raw);
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":4}}`);
    await a.expectText(ERR_NOT_MEMBER);
    await b.expectNothing(200);
    for (const ws of [a, b, c]) {
        ws.close();
    }
});

test('event name of 200 bytes is relayed, 201 bytes -> 4301 "Event name is too long"', async () => {
    const ch = 'private-names';
    const [a, b] = await connectAlternating(srv, 2);
    await subPrivate(a, ch);
    await subPrivate(b, ch);
    const ok = `client-${'n'.repeat(193)}`;
    const long = `client-${'n'.repeat(194)}`;
    assert.equal(ok.length, 200);
    a.sendText(`{"event":"${long}","channel":"${ch}","data":{"i":1}}`);
    await a.expectText(ERR_NAME);
    a.sendText(`{"event":"${ok}","channel":"${ch}","data":{"i":2}}`);
    await b.expectText(relayed(ok, ch, '{"i":2}'));
    await noneGet([a, b], 200);
    a.close();
    b.close();
});

/* wait until the wall clock is early in a second, so a burst stays in one window whatever its alignment */
async function earlyInSecond() {
    while (Date.now() % 1000 > 200) {
        await sleep(Math.min(50, 1000 - (Date.now() % 1000) + 20));
    }
}

/* n client events in one TCP write */
function burst(ws, ch, n, from = 0) {
    const frames = [];
    for (let i = 0; i < n; i++) {
        frames.push(buildFrame(OP.TEXT, `{"event":"client-burst","channel":"${ch}","data":{"i":${from + i}}}`));
    }
    ws.write(Buffer.concat(frames));
}

async function expectBurst(sender, receivers, ch, from, delivered, rejected) {
    for (const r of receivers) {
        for (let i = 0; i < delivered; i++) {
            await r.expectText(relayed('client-burst', ch, `{"i":${from + i}}`));
        }
    }
    for (let i = 0; i < rejected; i++) {
        await sender.expectText(ERR_RATE);
    }
    await noneGet([sender, ...receivers], 300);
}

test('default client_event_rate 10: a burst of 15 -> first 10 delivered, 5 rate-limit errors; next second accepted again', async () => {
    const ch = 'private-rate';
    const [a, b, c] = await connectAlternating(srv, 3);
    for (const ws of [a, b, c]) {
        await subPrivate(ws, ch);
    }
    await earlyInSecond();
    const t0 = Date.now();
    burst(a, ch, 15, 0);
    await expectBurst(a, [b, c], ch, 0, 10, 5);
    /* the limit is per connection: another sender is not affected */
    burst(b, ch, 2, 100);
    await expectBurst(b, [a, c], ch, 100, 2, 0);
    /* a fresh window: over a second after the first burst, in the next wall-clock second */
    await sleep(Math.max(0, t0 + 1050 - Date.now()));
    burst(a, ch, 10, 200);
    await expectBurst(a, [b, c], ch, 200, 10, 0);
    await ping(a);
    for (const ws of [a, b, c]) {
        ws.close();
    }
});

test('client_event_rate 3: a burst of 5 -> 3 delivered, 2 errors', async () => {
    const ch = 'private-rate3';
    const [a, b] = await connectAlternating(srv, 2, { key: RATE3.key });
    await subPrivate(a, ch, RATE3);
    await subPrivate(b, ch, RATE3);
    await earlyInSecond();
    burst(a, ch, 5, 0);
    await expectBurst(a, [b], ch, 0, 3, 2);
    a.close();
    b.close();
});

test('client_events none: 4301 "The app does not have client messaging enabled", nothing delivered', async () => {
    const ch = 'private-none';
    const [a, b] = await connectAlternating(srv, 2, { key: NONE.key });
    await subPrivate(a, ch, NONE);
    await subPrivate(b, ch, NONE);
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":1}}`);
    await a.expectText(ERR_DISABLED);
    await ping(a);
    await b.expectNothing(200);
    a.close();
    b.close();
});

test('client_events all: a socket not subscribed to a private channel may send to it; subscribers on both workers receive', async () => {
    const ch = 'private-open';
    const [a, b, c] = await connectAlternating(srv, 3, { key: ALL.key });
    await subPrivate(b, ch, ALL);
    await subPrivate(c, ch, ALL);
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":1}}`);
    await allGet([b, c], relayed('client-typing', ch, '{"id":1}'));
    await a.expectNothing(200);
    /* subscribers still send, still not echoed */
    b.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":2}}`);
    await c.expectText(relayed('client-typing', ch, '{"id":2}'));
    await noneGet([a, b], 200);
    /* the default app on the same server stays in members mode */
    const d = await connectRaw(srv);
    d.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":3}}`);
    await d.expectText(ERR_NOT_MEMBER);
    for (const ws of [a, b, c, d]) {
        ws.close();
    }
});

test('client events stay within their app (same channel name in another app)', async () => {
    const ch = 'private-iso';
    const [a, b] = await connectAlternating(srv, 2);
    const c = await connectRaw(srv, { key: ALL.key });
    await subPrivate(a, ch);
    await subPrivate(b, ch);
    await subPrivate(c, ch, ALL);
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":1}}`);
    await b.expectText(relayed('client-typing', ch, '{"id":1}'));
    c.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":2}}`);
    await noneGet([a, b, c], 300);
    for (const ws of [a, b, c]) {
        ws.close();
    }
});

test('HTTP-triggered events still work alongside client events (socket_id exclusion too)', async () => {
    const ch = 'private-mixed';
    const [a, b] = await connectAlternating(srv, 2);
    await subPrivate(a, ch);
    await subPrivate(b, ch);
    a.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":1}}`);
    await b.expectText(relayed('client-typing', ch, '{"id":1}'));
    await sdkTrigger(api, ch, 'server-event', { s: 1 });
    await allGet([a, b], eventFrame('server-event', ch, { s: 1 }));
    await sdkTrigger(api, ch, 'server-event', { s: 2 }, { socket_id: a.socketId });
    await b.expectText(eventFrame('server-event', ch, { s: 2 }));
    b.sendText(`{"event":"client-typing","channel":"${ch}","data":{"id":2}}`);
    await a.expectText(relayed('client-typing', ch, '{"id":2}'));
    await noneGet([a, b], 200);
    a.close();
    b.close();
});

/* ---- laravel-echo whisper ---- */

function echoAs(userId, info) {
    return echoClient(srv, userId, info);
}

async function echoPair(idA, idB) {
    const a = await echoAs(idA, { id: idA });
    for (let i = 0; i < 40; i++) {
        const b = await echoAs(idB, { id: idB });
        if (b.worker !== a.worker) {
            return [a, b];
        }
        b.disconnect();
    }
    throw new Error('40 Echo clients all on one worker');
}

function subscribed(ch, ms = 3000) {
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`Echo ${ch.name}: not subscribed within ${ms * SLOW} ms`)), ms * SLOW);
        ch.subscribed(() => {
            clearTimeout(t);
            resolve();
        });
        ch.error((err) => {
            clearTimeout(t);
            reject(new Error(`Echo subscription error: ${JSON.stringify(err)}`));
        });
    });
}

test('Echo private().whisper() is received by listenForWhisper() on the other worker, not by the sender', async () => {
    const [a, b] = await echoPair(1, 2);
    const got = { a: [], b: [] };
    const ca = a.private('chat').listenForWhisper('typing', (d) => got.a.push(d));
    const cb = b.private('chat').listenForWhisper('typing', (d) => got.b.push(d));
    await Promise.all([subscribed(ca), subscribed(cb)]);
    ca.whisper('typing', { a: 1 });
    await waitUntil(() => got.b.length === 1, 3000, () => `whisper: ${JSON.stringify(got)}`);
    cb.whisper('typing', { b: 2 });
    await waitUntil(() => got.a.length === 1, 3000, () => `whisper back: ${JSON.stringify(got)}`);
    await sleep(200);
    assert.deepEqual(got, { a: [{ b: 2 }], b: [{ a: 1 }] });
    a.disconnect();
    b.disconnect();
});

test('Echo join().whisper() on a presence channel is received by listenForWhisper() on the other worker', async () => {
    const [a, b] = await echoPair(11, 12);
    const got = { a: [], b: [] };
    const ca = a.join('whisper-room').listenForWhisper('typing', (d) => got.a.push(d));
    const cb = b.join('whisper-room').listenForWhisper('typing', (d) => got.b.push(d));
    await Promise.all([subscribed(ca), subscribed(cb)]);
    ca.whisper('typing', { from: 'a' });
    cb.whisper('typing', { from: 'b' });
    await waitUntil(() => got.a.length === 1 && got.b.length === 1, 3000, () => `presence whisper: ${JSON.stringify(got)}`);
    await sleep(200);
    assert.deepEqual(got, { a: [{ from: 'b' }], b: [{ from: 'a' }] });
    a.disconnect();
    b.disconnect();
});

test('pusher-js on a presence channel sees the sender\'s user_id in the client event metadata', async () => {
    const [a, b] = await echoPair(21, 22);
    const ca = a.join('meta-room');
    const cb = b.join('meta-room');
    await Promise.all([subscribed(ca), subscribed(cb)]);
    const metas = [];
    b.connector.pusher.channel('presence-meta-room').bind('client-hello', (d, meta) => metas.push([d, meta]));
    ca.whisper('hello', { x: 1 });
    await waitUntil(() => metas.length === 1, 3000, 'client-hello with metadata');
    assert.deepEqual(metas[0][0], { x: 1 });
    assert.equal(metas[0][1] && metas[0][1].user_id, '21', JSON.stringify(metas[0][1]));
    a.disconnect();
    b.disconnect();
});
