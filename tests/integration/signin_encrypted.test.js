'use strict';
// User sign-in (pusher:signin, #server-to-user-{id}, signin_timeout) and
// encrypted channels (private-encrypted-*: the ciphertext from the pusher
// SDK is relayed untouched and pusher-js decrypts it; client events are
// refused).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { before, after, describe } = require('node:test');

const { startServer, test, waitUntil, sleep } = require('./lib/harness');
const {
    connectRaw,
    pusherJs,
    sdk,
    channelAuth,
    errorFrame,
} = require('./lib/clients');

async function nextText(ws, timeout = 3000) {
    const f = await ws.next({ timeout, what: 'a text frame' });
    assert.equal(f.opcode, 1, ws.dump());
    return f.text;
}

function hmac(secret, s) {
    return crypto.createHmac('sha256', secret).update(s).digest('hex');
}

function userAuth(srv, socketId, userData) {
    return `${srv.key}:${hmac(srv.secret, `${socketId}::user::${userData}`)}`;
}

function signinHandler(srv, user) {
    return {
        customHandler: ({ socketId }, cb) => {
            const user_data = JSON.stringify(user);
            cb(null, { auth: userAuth(srv, socketId, user_data), user_data });
        },
    };
}

function signinFrame(srv, ws, user) {
    const user_data = JSON.stringify(user);
    return JSON.stringify({
        event: 'pusher:signin',
        data: { auth: userAuth(srv, ws.socketId, user_data), user_data },
    });
}

describe('user sign-in', () => {
    let srv;

    before(async () => {
        srv = await startServer();
    });

    after(async () => {
        await srv.stop();
    });

    test('pusher:signin is answered with signin_success carrying user_data', async () => {
        const ws = await connectRaw(srv);
        const user = { id: '42', name: 'Ada' };
        ws.sendText(signinFrame(srv, ws, user));
        const f = await nextText(ws);
        assert.equal(f, JSON.stringify({
            event: 'pusher:signin_success',
            data: JSON.stringify({ user_data: JSON.stringify(user) }),
        }));
        ws.close();
    });

    test('sendToUser reaches every signed-in socket of that user on both workers and nobody else', async () => {
        const user = { id: 'u-7', name: 'Grace' };
        const tabs = [];
        for (let i = 0; i < 6; i++) {
            const c = await pusherJs(srv, { userAuthentication: signinHandler(srv, user) });
            c.got = [];
            c.user.bind('notice', (d) => c.got.push(d));
            c.signin();
            tabs.push(c);
        }
        const other = await pusherJs(srv, { userAuthentication: signinHandler(srv, { id: 'someone-else' }) });
        other.got = [];
        other.user.bind('notice', (d) => other.got.push(d));
        other.signin();

        const pids = new Set(tabs.map((c) => c.connection.socket_id.split('.')[0]));
        await waitUntil(() => tabs.every((c) => c.user.serverToUserChannel
                                              && c.user.serverToUserChannel.subscribed)
                             && other.user.serverToUserChannel
                             && other.user.serverToUserChannel.subscribed,
                        5000, 'all signed in and subscribed to #server-to-user');

        const api = sdk(srv);
        const res = await api.sendToUser('u-7', 'notice', { n: 1 });
        assert.equal(res.status, 200);

        await waitUntil(() => tabs.every((c) => c.got.length === 1), 5000, 'every tab got the event');
        for (const c of tabs) {
            assert.deepEqual(c.got, [{ n: 1 }]);
        }
        await sleep(200);
        assert.deepEqual(other.got, []);
        if (pids.size < 2) {
            console.log(`note: tabs landed on one worker only (${[...pids]})`);
        }
        for (const c of [...tabs, other]) {
            c.disconnect();
        }
    });

    test('#server-to-user-{id} is refused to a socket not signed in as that user', async () => {
        const ws = await connectRaw(srv);
        ws.sendText('{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-9"}}');
        const f = JSON.parse(await nextText(ws));
        assert.equal(f.event, 'pusher:subscription_error');
        assert.equal(f.channel, '#server-to-user-9');
        assert.deepEqual(JSON.parse(f.data).status, 401);

        ws.sendText(signinFrame(srv, ws, { id: '8' }));
        await nextText(ws);
        ws.sendText('{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-9"}}');
        const g = JSON.parse(await nextText(ws));
        assert.equal(g.event, 'pusher:subscription_error');
        ws.close();
    });

    test('a signed-in socket joins a presence channel without channel_data as its signed-in user', async () => {
        const ws = await connectRaw(srv);
        ws.sendText(signinFrame(srv, ws, { id: '55', user_info: { name: 'Zed' } }));
        await nextText(ws);
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, 'presence-authorized'),
                    channel: 'presence-authorized' },
        }));
        const f = await ws.waitEvent('pusher_internal:subscription_succeeded', 'presence-authorized');
        assert.equal(f.data, JSON.stringify({ presence: { count: 1, ids: ['55'], hash: { 55: { name: 'Zed' } } } }));

        /* not signed in: the same subscribe is refused */
        const other = await connectRaw(srv);
        other.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: channelAuth(srv.key, srv.secret, other.socketId, 'presence-authorized'),
                    channel: 'presence-authorized' },
        }));
        const e = JSON.parse(await nextText(other));
        assert.equal(e.event, 'pusher:subscription_error');
        ws.close();
        other.close();
    });

    test('a bad signin signature gets pusher:error 4009 and close 4009', async () => {
        const ws = await connectRaw(srv);
        const user_data = JSON.stringify({ id: '1' });
        ws.sendText(JSON.stringify({
            event: 'pusher:signin',
            data: { auth: `${srv.key}:${'0'.repeat(64)}`, user_data },
        }));
        assert.equal(await nextText(ws), errorFrame(4009, 'Connection not authorized'));
        await ws.expectClose(4009);
    });

    test('user_data without a string id gets 4009', async () => {
        const ws = await connectRaw(srv);
        const user_data = JSON.stringify({ id: 1 });
        ws.sendText(JSON.stringify({
            event: 'pusher:signin',
            data: { auth: userAuth(srv, ws.socketId, user_data), user_data },
        }));
        const f = JSON.parse(await nextText(ws));
        assert.equal(f.event, 'pusher:error');
        assert.equal(JSON.parse(f.data).code, 4009);
        await ws.expectClose(4009);
    });
});

describe('signin_timeout', () => {
    let srv;

    before(async () => {
        srv = await startServer({ app: { signin_timeout: '1s', ping_interval: '60s' } });
    });

    after(async () => {
        await srv.stop();
    });

    test('a socket that neither signs in nor subscribes privately is closed with 4009', async () => {
        const ws = await connectRaw(srv);
        const t0 = Date.now();
        assert.equal(await nextText(ws, 5000),
                     errorFrame(4009, 'Connection not authorized within timeout'));
        await ws.expectClose(4009);
        assert.ok(Date.now() - t0 >= 800, `closed after ${Date.now() - t0} ms`);
    });

    test('signing in in time keeps the socket open', async () => {
        const ws = await connectRaw(srv);
        ws.sendText(signinFrame(srv, ws, { id: '5' }));
        assert.match(await nextText(ws), /^\{"event":"pusher:signin_success"/);
        await sleep(1500);
        ws.sendText('{"event":"pusher:ping","data":{}}');
        assert.equal(await nextText(ws), '{"event":"pusher:pong","data":"{}"}');
        ws.close();
    });

    test('a private subscription in time keeps the socket open', async () => {
        const ws = await connectRaw(srv);
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, 'private-a'), channel: 'private-a' },
        }));
        assert.match(await nextText(ws), /subscription_succeeded/);
        await sleep(1500);
        ws.sendText('{"event":"pusher:ping","data":{}}');
        assert.equal(await nextText(ws), '{"event":"pusher:pong","data":"{}"}');
        ws.close();
    });
});

describe('encrypted channels', () => {
    let srv;
    let api;
    const masterKey = crypto.randomBytes(32).toString('base64');

    before(async () => {
        srv = await startServer();
        api = sdk(srv, { encryptionMasterKeyBase64: masterKey });
    });

    after(async () => {
        await srv.stop();
    });

    test('pusher SDK encrypts, the server relays, pusher-js decrypts on both workers', async () => {
        const clients = [];
        for (let i = 0; i < 6; i++) {
            const c = await pusherJs(srv, {
                channelAuthorization: {
                    customHandler: ({ socketId, channelName }, cb) =>
                        cb(null, api.authorizeChannel(socketId, channelName)),
                },
            });
            c.got = [];
            const ch = c.subscribe('private-encrypted-vault');
            ch.bind('secret', (d) => c.got.push(d));
            c.ch = ch;
            clients.push(c);
        }
        await waitUntil(() => clients.every((c) => c.ch.subscribed), 5000, 'encrypted subscribed');

        /* a raw subscriber sees only ciphertext */
        const ws = await connectRaw(srv);
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, 'private-encrypted-vault'),
                    channel: 'private-encrypted-vault' },
        }));
        await nextText(ws);

        const res = await api.trigger('private-encrypted-vault', 'secret', { pin: 1234 });
        assert.equal(res.status, 200);

        await waitUntil(() => clients.every((c) => c.got.length === 1), 5000, 'all decrypted');
        for (const c of clients) {
            assert.deepEqual(c.got, [{ pin: 1234 }]);
        }

        const raw = JSON.parse(await nextText(ws));
        assert.equal(raw.event, 'secret');
        const payload = JSON.parse(raw.data);
        assert.deepEqual(Object.keys(payload).sort(), ['ciphertext', 'nonce']);
        assert.ok(!raw.data.includes('1234'));

        ws.close();
        for (const c of clients) {
            c.disconnect();
        }
    });

    test('client events on an encrypted channel are refused', async () => {
        const ws = await connectRaw(srv);
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, 'private-encrypted-x'),
                    channel: 'private-encrypted-x' },
        }));
        await nextText(ws);
        ws.sendText('{"event":"client-x","channel":"private-encrypted-x","data":{}}');
        assert.equal(await nextText(ws),
                     errorFrame(4301, 'Client events are not allowed on encrypted channels'));
        ws.close();
    });
});
