'use strict';
// Tests that nginx.conf is the single source of truth for apps: a reload
// that changes an app's key or secret, or adds an app, takes effect in the
// module (WebSocket keys, channel auth) and in the broker (API signatures).

const assert = require('node:assert/strict');
const { before, after } = require('node:test');

const { startServer, test, waitUntil } = require('./lib/harness');
const { RawWs } = require('./lib/rawws');
const {
    connectRaw, subscribeRaw, eventFrame, errorFrame, sdk, sdkTrigger, signedRequest, channelAuth, succeededFrame,
} = require('./lib/clients');

let srv;

before(async () => {
    srv = await startServer({ extraApps: [{ id: '777', key: 'second-key', secret: 'second-secret' }] });
});

after(async () => {
    await srv.stop();
});

function body(channel, name = 'cfg') {
    return JSON.stringify({ name, channels: [channel], data: '{}' });
}

test('two apps in one nginx.conf are isolated: same channel name, events stay in their app', async () => {
    const a = await connectRaw(srv);
    const b = await connectRaw(srv, { key: 'second-key' });
    await subscribeRaw(a, 'shared-name');
    await subscribeRaw(b, 'shared-name');
    const second = sdk(srv, { appId: '777', key: 'second-key', secret: 'second-secret' });
    await sdkTrigger(second, 'shared-name', 'for-second', { app: 2 });
    await sdkTrigger(sdk(srv), 'shared-name', 'for-first', { app: 1 });
    await b.expectText(eventFrame('for-second', 'shared-name', { app: 2 }));
    await a.expectText(eventFrame('for-first', 'shared-name', { app: 1 }));
    await a.expectNothing(200);
    await b.expectNothing(50);
    /* app 1's secret does not sign for app 777 */
    const r = await signedRequest(srv, 'POST', '/apps/777/events', { body: body('shared-name'), key: 'second-key' });
    assert.equal(r.status, 401, r.body);
    a.close();
    b.close();
});

test('reload with a new secret: the broker and the module switch to it', async () => {
    const oldSecret = srv.secret;
    srv.rewriteConf({ secret: 'rotated-secret' });
    await srv.reload();
    await waitUntil(async () => (await signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, { body: body('x') })).status === 200, 5000,
        'a request signed with the new secret is accepted after the reload');
    const stale = await signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, { body: body('x'), signSecret: oldSecret });
    assert.equal(stale.status, 401, `old secret still accepted after reload: ${stale.status} ${stale.body}`);

    const ws = await connectRaw(srv);
    ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'private-rot', auth: channelAuth(srv.key, oldSecret, ws.socketId, 'private-rot') } });
    const e = await ws.nextEvent();
    assert.equal(e.event, 'pusher:subscription_error', `channel auth with the old secret: ${e.raw}`);
    ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'private-rot', auth: channelAuth(srv.key, srv.secret, ws.socketId, 'private-rot') } });
    await ws.expectText(succeededFrame('private-rot'));
    await sdkTrigger(sdk(srv), 'private-rot', 'rotated', { ok: 1 });
    await ws.expectText(eventFrame('rotated', 'private-rot', { ok: 1 }));
    ws.close();
});

test('reload with a new key: the old key is refused with 4001, the new one connects', async () => {
    const oldKey = srv.key;
    srv.rewriteConf({ key: 'rotated-key' });
    await srv.reload();
    await waitUntil(async () => (await signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, { body: body('x') })).status === 200, 5000,
        'a request with the new auth_key is accepted after the reload');
    const r = await signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, { body: body('x'), key: oldKey });
    assert.equal(r.status, 401, `old auth_key still accepted: ${r.status} ${r.body}`);
    const old = await RawWs.connect(srv.port, `/app/${oldKey}?protocol=7`);
    srv.track(old);
    await old.expectText(errorFrame(4001, 'Application does not exist'));
    await old.expectClose(4001);
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'new-key');
    ws.close();
});

test('reload that adds an app: its key connects and its API id answers', async () => {
    srv.rewriteConf({ extraApps: [{ id: '777', key: 'second-key', secret: 'second-secret' }, { id: '888', key: 'third-key', secret: 'third-secret' }] });
    await srv.reload();
    const third = sdk(srv, { appId: '888', key: 'third-key', secret: 'third-secret' });
    const ws = await connectRaw(srv, { key: 'third-key' });
    await subscribeRaw(ws, 'third');
    await waitUntil(async () => {
        try {
            return (await sdkTrigger(third, 'third', 'hello', { app: 3 })).status === 200;
        } catch {
            return false;
        }
    }, 5000, 'the new app is accepted by the broker after the reload', 100);
    await ws.waitEvent('hello', 'third');
    ws.close();
});

test('reload that removes an app: its sockets get 4200 and a reconnect gets 4001; the other apps keep their sockets', async () => {
    const removed = await connectRaw(srv, { key: 'third-key' });
    await subscribeRaw(removed, 'gone');
    const stays = await connectRaw(srv, { key: 'second-key' });
    await subscribeRaw(stays, 'stays');
    srv.rewriteConf({ extraApps: [{ id: '777', key: 'second-key', secret: 'second-secret' }] });
    await srv.reload();
    await removed.expectText(errorFrame(4200, 'Server is shutting down'));
    await removed.expectClose(4200);
    const again = await RawWs.connect(srv.port, '/app/third-key?protocol=7');
    srv.track(again);
    await again.expectText(errorFrame(4001, 'Application does not exist'));
    await again.expectClose(4001);
    await waitUntil(async () => (await signedRequest(srv, 'POST', '/apps/888/events', { body: body('x'), key: 'third-key', secret: 'third-secret' })).status === 404,
        5000, 'the broker forgets the removed app');
    await stays.expectNothing(200);
    const second = sdk(srv, { appId: '777', key: 'second-key', secret: 'second-secret' });
    await sdkTrigger(second, 'stays', 'still-here', { ok: 1 });
    await stays.expectText(eventFrame('still-here', 'stays', { ok: 1 }));
    stays.close();
});
