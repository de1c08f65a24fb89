'use strict';
// Per-app settings in nginx.conf: enabled (4003), allowed_origins (4009),
// max_connections (4004, counted over both workers), and the HTTP API
// limits the broker enforces per app (max_event_data, max_event_channels,
// max_event_name, max_batch_events), each next to an app with defaults.

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, waitUntil, socketWorker } = require('./lib/harness');
const { RawWs } = require('./lib/rawws');
const {
    connectRaw, subscribeRaw, eventFrame, errorFrame, signedRequest, sdk, sdkTrigger,
} = require('./lib/clients');

let srv;

const DISABLED = { id: '801', key: 'disabled-key', secret: 'disabled-secret', app: { enabled: 'off' } };
const ORIGINS = { id: '802', key: 'origins-key', secret: 'origins-secret', app: { allowed_origins: '*.example.com app.test' } };
const ORIGINS_NONE = { id: '803', key: 'none-key', secret: 'none-secret', app: { allowed_origins: 'none app.test' } };
const QUOTA = { id: '804', key: 'quota-key', secret: 'quota-secret', app: { max_connections: 3 } };
const LIMITS = {
    id: '805',
    key: 'limits-key',
    secret: 'limits-secret',
    app: { max_event_data: 100, max_event_channels: 2, max_event_name: 10, max_batch_events: 2 },
};

before(async () => {
    srv = await startServer({ extraApps: [DISABLED, ORIGINS, ORIGINS_NONE, QUOTA, LIMITS] });
});

after(async () => {
    await srv.stop();
});

/* a WebSocket that the server refuses after the upgrade with code/message */
async function expectRefused(key, code, message, headers) {
    const ws = await RawWs.connect(srv.port, `/app/${key}?protocol=7&client=js&version=8.4.0`, { headers });
    srv.track(ws);
    await ws.expectText(errorFrame(code, message));
    await ws.expectClose(code);
    return ws;
}

function postAs(a, path, body) {
    return signedRequest(srv, 'POST', `/apps/${a.id}${path}`, { body: JSON.stringify(body), key: a.key, secret: a.secret });
}

function assertJsonError(r, status, error) {
    assert.equal(r.status, status, `status ${r.status} body ${r.body}`);
    assert.deepEqual(r.json, { error, code: status }, r.body);
}

test('enabled off: pusher:error 4003 "The app is not enabled." and close 4003; the other apps connect', async () => {
    await expectRefused(DISABLED.key, 4003, 'The app is not enabled.');
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'enabled-check');
    ws.close();
});

test('allowed_origins: matching hosts connect, others get 4009 "Origin not allowed" and close 4009', async () => {
    for (const origin of ['https://app.example.com', 'http://a.b.example.com:8080', 'https://APP.TEST', 'http://app.test:3000']) {
        const ws = await connectRaw(srv, { key: ORIGINS.key, headers: { Origin: origin } });
        await subscribeRaw(ws, 'origins');
        ws.close();
    }
    for (const origin of ['https://example.com', 'https://evilexample.com', 'https://app.example.com.evil.net', 'null', 'https://app.tester']) {
        await expectRefused(ORIGINS.key, 4009, 'Origin not allowed', { Origin: origin });
    }
});

test('allowed_origins without "none": a client that sends no Origin gets 4009; with "none" it connects', async () => {
    await expectRefused(ORIGINS.key, 4009, 'Origin not allowed', { Origin: null });
    const ws = await connectRaw(srv, { key: ORIGINS_NONE.key, headers: { Origin: null } });
    await subscribeRaw(ws, 'no-origin');
    ws.close();
    await expectRefused(ORIGINS_NONE.key, 4009, 'Origin not allowed', { Origin: 'https://other.test' });
    const ok = await connectRaw(srv, { key: ORIGINS_NONE.key, headers: { Origin: 'https://app.test' } });
    ok.close();
});

test('an app without allowed_origins admits any Origin and none', async () => {
    for (const headers of [{ Origin: 'https://anything.invalid' }, { Origin: null }]) {
        const ws = await connectRaw(srv, { headers });
        ws.close();
    }
});

/* a socket of app key, or null when the server refuses it with 4004 */
async function tryConnect(key) {
    const ws = await RawWs.connect(srv.port, `/app/${key}?protocol=7`);
    srv.track(ws);
    const e = await ws.nextEvent();
    if (e.event === 'pusher:connection_established') {
        ws.socketId = JSON.parse(e.data).socket_id;
        ws.worker = socketWorker(ws.socketId);
        return ws;
    }
    assert.equal(e.raw, errorFrame(4004, 'Application is over connection quota'));
    ws.close();
    return null;
}

test('max_connections 3 over both workers: the 4th gets 4004 "Application is over connection quota" and close 4004; a freed place is reused', async () => {
    /* three sockets, on both workers: no worker alone is at the limit */
    const socks = [];
    for (let round = 0; ; round++) {
        assert.ok(round < 64, 'three sockets spread over both workers');
        while (socks.length < 3) {
            const ws = await tryConnect(QUOTA.key);
            if (ws) {
                socks.push(ws);
            }
        }
        if (new Set(socks.map((ws) => ws.worker)).size === 2) {
            break;
        }
        const ws = socks.pop();
        ws.sendClose(1000);
        await ws.expectClose(1000);
    }
    for (let i = 0; i < 4; i++) {
        await expectRefused(QUOTA.key, 4004, 'Application is over connection quota');
    }
    /* other apps are not limited by it */
    const other = await connectRaw(srv);
    other.close();
    socks[0].sendClose(1000);
    await socks[0].expectClose(1000);
    let again = null;
    await waitUntil(async () => {
        again = await tryConnect(QUOTA.key);
        return again !== null;
    }, 3000, 'a connection is accepted after one of three closed', 50);
    await subscribeRaw(again, 'quota');
    for (const ws of [again, socks[1], socks[2]]) {
        ws.close();
    }
});


test('per-app HTTP API limits: data, channels, name and batch size; the default app is not limited by them', async () => {
    const data = 'x'.repeat(100);
    assert.equal((await postAs(LIMITS, '/events', { name: 'e', channels: ['a'], data })).status, 200);
    assertJsonError(await postAs(LIMITS, '/events', { name: 'e', channels: ['a'], data: `${data}x` }), 413,
        'Event data is larger than 100 bytes');
    assert.equal((await postAs(LIMITS, '/events', { name: 'e', channels: ['a', 'b'], data: '{}' })).status, 200);
    assertJsonError(await postAs(LIMITS, '/events', { name: 'e', channels: ['a', 'b', 'c'], data: '{}' }), 400,
        'Cannot broadcast to more than 2 channels at once');
    assert.equal((await postAs(LIMITS, '/events', { name: '0123456789', channels: ['a'], data: '{}' })).status, 200);
    assertJsonError(await postAs(LIMITS, '/events', { name: '0123456789A', channels: ['a'], data: '{}' }), 400,
        'Event name is longer than 10 bytes');
    const item = { name: 'e', channel: 'a', data: '{}' };
    assert.equal((await postAs(LIMITS, '/batch_events', { batch: [item, item] })).status, 200);
    assertJsonError(await postAs(LIMITS, '/batch_events', { batch: [item, item, item] }), 400,
        'Cannot batch-send more than 2 messages at once');

    /* the first app keeps Pusher's defaults */
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'defaults');
    const channels = ['defaults', 'b', 'c'];
    const r = await sdkTrigger(sdk(srv), channels, '0123456789AB', { d: 'y'.repeat(5000) });
    assert.equal(r.status, 200, r.body);
    await ws.expectText(eventFrame('0123456789AB', 'defaults', { d: 'y'.repeat(5000) }));
    ws.close();
});

test('an event of an app with limits still reaches its subscribers', async () => {
    const ws = await connectRaw(srv, { key: LIMITS.key });
    await subscribeRaw(ws, 'limited');
    const api = sdk(srv, { appId: LIMITS.id, key: LIMITS.key, secret: LIMITS.secret });
    await sdkTrigger(api, 'limited', 'short', { ok: 1 });
    await ws.expectText(eventFrame('short', 'limited', { ok: 1 }));
    ws.close();
});

test('max_connections after a worker crash: the respawned worker takes the dead worker\'s sockets out of the count', async () => {
    const socks = [];
    while (socks.length < 3) {
        const ws = await tryConnect(QUOTA.key);
        if (ws) {
            socks.push(ws);
        } else {
            await new Promise((r) => setTimeout(r, 50));
        }
    }
    await expectRefused(QUOTA.key, 4004, 'Application is over connection quota');
    const victim = Number(socks[0].worker);
    const lost = socks.filter((ws) => Number(ws.worker) === victim);
    await srv.killWorker(victim);
    /* as many places as the dead worker held come back, and no more */
    const fresh = [];
    await waitUntil(async () => {
        const ws = await tryConnect(QUOTA.key);
        if (ws) {
            fresh.push(ws);
        }
        return fresh.length === lost.length;
    }, 5000, `${lost.length} places freed by the crash`, 50);
    await expectRefused(QUOTA.key, 4004, 'Application is over connection quota');
    for (const ws of [...socks, ...fresh]) {
        ws.close();
    }
});
