'use strict';
// Tests that laravel-echo (broadcaster "reverb") works unchanged against
// the server: public and private channels, namespaced event names and
// toOthers() exclusion by socket_id.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const PusherJs = require('pusher-js');

const { startServer, test, waitUntil, sleep } = require('./lib/harness');
const { sdk, sdkTrigger, echoClient, wsOptions, SOCKET_ID_RE } = require('./lib/clients');

let srv;
let api;
let Echo;

before(async () => {
    /* laravel-echo is an ES module package */
    ({ default: Echo } = await import('laravel-echo'));
    srv = await startServer();
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

function echo() {
    return echoClient(srv);
}

function subscribed(ch) {
    return new Promise((resolve, reject) => {
        ch.subscribed(resolve);
        ch.error((err) => reject(new Error(`Echo subscription error: ${JSON.stringify(err)}`)));
    });
}

test('Echo connects with a Pusher-format socket id', async () => {
    const e = await echo();
    assert.match(e.socketId(), SOCKET_ID_RE);
    assert.equal(e.connectionStatus(), 'connected');
    e.disconnect();
});

test('Echo.channel().listen() receives namespaced and dot-prefixed events', async () => {
    const e = await echo();
    const got = [];
    const ch = e.channel('orders')
        .listen('OrderShipped', (d) => got.push(['ns', d]))
        .listen('.plain.event', (d) => got.push(['plain', d]));
    await subscribed(ch);
    await sdkTrigger(api, 'orders', 'App\\Events\\OrderShipped', { id: 7 });
    await sdkTrigger(api, 'orders', 'plain.event', { id: 8 });
    await waitUntil(() => got.length === 2, 3000, () => `Echo got ${JSON.stringify(got)}`);
    assert.deepEqual(got, [['ns', { id: 7 }], ['plain', { id: 8 }]]);
    e.disconnect();
});

test('Echo.private() subscribes with edge HMAC auth and receives events', async () => {
    const e = await echo();
    const got = [];
    const ch = e.private('orders.1').listen('.updated', (d) => got.push(d));
    await subscribed(ch);
    await sdkTrigger(api, 'private-orders.1', 'updated', { status: 'paid' });
    await waitUntil(() => got.length === 1, 3000, 'private event');
    assert.deepEqual(got, [{ status: 'paid' }]);
    e.disconnect();
});

test('Echo.private() with a wrong signature reports a subscription error', async () => {
    const e = new Echo({
        broadcaster: 'reverb',
        key: srv.key,
        ...wsOptions(srv),
        disableStats: true,
        Pusher: PusherJs,
        channelAuthorization: { customHandler: (p, cb) => cb(null, { auth: `${srv.key}:${'0'.repeat(64)}` }) },
    });
    srv.track(e.connector.pusher);
    const err = await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no subscription error within 3 s')), 3000);
        e.private('orders.2').error((x) => {
            clearTimeout(t);
            resolve(x);
        });
    });
    assert.equal(err.type, 'AuthError', JSON.stringify(err));
    assert.equal(err.status, 401, JSON.stringify(err));
    e.disconnect();
});

test('toOthers(): a trigger with the sender\'s socket_id skips the sender only', async () => {
    const sender = await echo();
    const other = await echo();
    const got = { sender: [], other: [] };
    await subscribed(sender.channel('chat').listen('.msg', (d) => got.sender.push(d)));
    await subscribed(other.channel('chat').listen('.msg', (d) => got.other.push(d)));
    await sdkTrigger(api, 'chat', 'msg', { text: 'hi' }, { socket_id: sender.socketId() });
    await waitUntil(() => got.other.length === 1, 3000, 'other got the message');
    await sleep(200);
    assert.deepEqual(got, { sender: [], other: [{ text: 'hi' }] });
    sender.disconnect();
    other.disconnect();
});
