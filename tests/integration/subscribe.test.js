'use strict';
// Tests for pusher:subscribe / pusher:unsubscribe on public and private
// channels (edge HMAC authorization).

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test } = require('./lib/harness');
const { connectRaw, subscribeRaw, succeededFrame, eventFrame, sdk, sdkTrigger, channelAuth, pusherJs, pjsSubscribe, PONG } = require('./lib/clients');

let srv;
let api;

before(async () => {
    srv = await startServer();
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

test('subscribe with data as an object -> subscription_succeeded', async () => {
    const ws = await connectRaw(srv);
    ws.sendText('{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}');
    await ws.expectText('{"event":"pusher_internal:subscription_succeeded","channel":"my-channel","data":"{}"}');
    ws.close();
});

test('subscribe with data as a JSON string -> subscription_succeeded', async () => {
    const ws = await connectRaw(srv);
    ws.sendText('{"event":"pusher:subscribe","data":"{\\"channel\\":\\"my-channel\\"}"}');
    await ws.expectText('{"event":"pusher_internal:subscription_succeeded","channel":"my-channel","data":"{}"}');
    ws.close();
});

test('subscribing twice to the same channel re-sends succeeded and delivers events once', async () => {
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'twice');
    await subscribeRaw(ws, 'twice');
    const r = await sdkTrigger(api, 'twice', 'e', { n: 1 });
    assert.equal(r.status, 200);
    await ws.expectText(eventFrame('e', 'twice', { n: 1 }));
    await ws.expectNothing(300);
    ws.close();
});

for (const bad of ['bad channel!', '', 'x'.repeat(201), 'ünïcödé']) {
    test(`invalid channel name ${JSON.stringify(bad.length > 20 ? `${bad.slice(0, 10)}...(${bad.length})` : bad)} -> subscription_error InvalidChannel 4009`, async () => {
        const ws = await connectRaw(srv);
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: bad } });
        const e = await ws.nextEvent();
        assert.equal(e.event, 'pusher:subscription_error', e.raw);
        assert.equal(typeof e.data, 'string', `data must be a JSON string: ${e.raw}`);
        assert.equal(e.dataParsed.type, 'InvalidChannel', e.raw);
        assert.equal(e.dataParsed.status, 4009, e.raw);
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
        ws.close();
    });
}

test('a long invalid channel name of 2-byte characters is quoted back cut at a character boundary: the frame is valid UTF-8', async () => {
    const ws = await connectRaw(srv);
    const bad = `a${'\u00e9'.repeat(400)}`;
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: bad } });
    const f = await ws.next();
    /* a text frame must be valid UTF-8 (RFC 6455 8.1): decode strictly */
    const text = new TextDecoder('utf-8', { fatal: true }).decode(f.payload);
    const e = JSON.parse(text);
    assert.equal(e.event, 'pusher:subscription_error', text);
    /* 298 bytes at most: "a" and 148 characters of 2 bytes */
    assert.equal(e.channel, `a${'\u00e9'.repeat(148)}`);
    assert.equal(JSON.parse(e.data).type, 'InvalidChannel');
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    ws.close();
});

test('subscribe without a channel -> an error frame, socket stays open', async () => {
    const ws = await connectRaw(srv);
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '' } });
    const e = await ws.nextEvent();
    assert.ok(['pusher:error', 'pusher:subscription_error'].includes(e.event), e.raw);
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    ws.close();
});

test('private channel with a correct HMAC auth -> subscription_succeeded and events', async () => {
    const ws = await connectRaw(srv);
    const auth = channelAuth(srv.key, srv.secret, ws.socketId, 'private-x');
    ws.sendJson({ event: 'pusher:subscribe', data: { auth, channel: 'private-x' } });
    await ws.expectText(succeededFrame('private-x'));
    await sdkTrigger(api, 'private-x', 'secret-event', { a: 1 });
    await ws.expectText(eventFrame('secret-event', 'private-x', { a: 1 }));
    ws.close();
});

const AUTH_ERROR = '{"event":"pusher:subscription_error","channel":"private-x","data":"{\\"type\\":\\"AuthError\\",\\"error\\":\\"Invalid signature\\",\\"status\\":401}"}';

const WRONG_AUTHS = [
    ['a wrong signature', (ws) => channelAuth(srv.key, 'wrong-secret', ws.socketId, 'private-x')],
    ['another socket\'s signature', (ws) => channelAuth(srv.key, srv.secret, '1.1', 'private-x')],
    ['another channel\'s signature', (ws) => channelAuth(srv.key, srv.secret, ws.socketId, 'private-y')],
    ['a wrong key prefix', (ws) => channelAuth('other-key', srv.secret, ws.socketId, 'private-x')],
    ['no auth', () => ''],
    ['auth without a colon', () => 'abcdef'],
    ['a truncated signature', (ws) => channelAuth(srv.key, srv.secret, ws.socketId, 'private-x').slice(0, -2)],
    ['an upper-case hex signature', (ws) => {
        const a = channelAuth(srv.key, srv.secret, ws.socketId, 'private-x');
        const i = a.indexOf(':') + 1;
        /* only wrong if it contains a-f; HMAC hex practically always does */
        return a.slice(0, i) + a.slice(i).toUpperCase();
    }],
];

for (const [name, mk] of WRONG_AUTHS) {
    test(`private channel with ${name} -> AuthError 401 and no events afterwards`, async () => {
        const ws = await connectRaw(srv);
        await subscribeRaw(ws, 'marker');
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: mk(ws), channel: 'private-x' } });
        await ws.expectText(AUTH_ERROR);
        await sdkTrigger(api, 'private-x', 'leak', { no: 1 });
        await sdkTrigger(api, 'marker', 'after', { yes: 1 });
        /* the marker event is delivered after the private one: nothing before it */
        await ws.expectText(eventFrame('after', 'marker', { yes: 1 }));
        ws.close();
    });
}

test('private channel auth check is per socket: the same auth on a second socket fails', async () => {
    const a = await connectRaw(srv);
    const b = await connectRaw(srv);
    const auth = channelAuth(srv.key, srv.secret, a.socketId, 'private-x');
    a.sendJson({ event: 'pusher:subscribe', data: { auth, channel: 'private-x' } });
    await a.expectText(succeededFrame('private-x'));
    b.sendJson({ event: 'pusher:subscribe', data: { auth, channel: 'private-x' } });
    await b.expectText(AUTH_ERROR);
    a.close();
    b.close();
});

test('unsubscribe gets no reply and stops delivery on that channel only', async () => {
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'unsub-me');
    await subscribeRaw(ws, 'keep-me');
    ws.sendJson({ event: 'pusher:unsubscribe', data: { channel: 'unsub-me' } });
    await ws.expectNothing(300);
    await sdkTrigger(api, 'unsub-me', 'gone', { x: 1 });
    await sdkTrigger(api, 'keep-me', 'kept', { x: 2 });
    await ws.expectText(eventFrame('kept', 'keep-me', { x: 2 }));
    /* unsubscribing from a channel never subscribed is silent too */
    ws.sendJson({ event: 'pusher:unsubscribe', data: { channel: 'never' } });
    ws.sendText('{"event":"pusher:unsubscribe","data":"{\\"channel\\":\\"keep-me\\"}"}');
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);
    await sdkTrigger(api, 'keep-me', 'gone-too', { x: 3 });
    await ws.expectNothing(300);
    ws.close();
});

test('pusher-js subscribes to public and private channels and receives events', async () => {
    const c = await pusherJs(srv);
    const pub = await pjsSubscribe(c, 'pjs-public');
    const priv = await pjsSubscribe(c, 'private-pjs');
    const got = [];
    pub.bind('ev', (d) => got.push(['pub', d]));
    priv.bind('ev', (d) => got.push(['priv', d]));
    await sdkTrigger(api, 'pjs-public', 'ev', { p: 1 });
    await sdkTrigger(api, 'private-pjs', 'ev', { q: 2 });
    const deadline = Date.now() + 3000;
    while (got.length < 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(got, [['pub', { p: 1 }], ['priv', { q: 2 }]]);
    c.disconnect();
});
