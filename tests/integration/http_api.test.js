'use strict';
// Tests for the Pusher HTTP API behind nginx: signature checks, limits,
// validation and the exact status codes.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { before, after } = require('node:test');

const { startServer, test, httpRequest } = require('./lib/harness');
const { signedPath, md5 } = require('./lib/sign');
const { connectRaw, subscribeRaw, eventFrame, signedRequest } = require('./lib/clients');

let srv;
let sub;

before(async () => {
    srv = await startServer();
    sub = await connectRaw(srv);
    await subscribeRaw(sub, 'api-channel');
});

after(async () => {
    await srv.stop();
});

function eventsPath() {
    return `/apps/${srv.appId}/events`;
}

function batchPath() {
    return `/apps/${srv.appId}/batch_events`;
}

function body(obj) {
    return JSON.stringify(obj);
}

const GOOD_EVENT = { name: 'api-event', channels: ['api-channel'], data: '{"ok":1}' };

function assertJsonError(r, status) {
    assert.equal(r.status, status, `status ${r.status} body ${r.body}`);
    assert.ok(r.json && typeof r.json === 'object', `body is not JSON: ${r.body}`);
    assert.equal(typeof r.json.error, 'string', `no "error" string: ${r.body}`);
    assert.equal(r.json.code, status, `"code" should be ${status}: ${r.body}`);
}

test('a valid signed POST /events -> 200 {} and the event is delivered', async () => {
    const r = await signedRequest(srv, 'POST', eventsPath(), { body: body(GOOD_EVENT) });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(r.json, {}, r.body);
    assert.match(r.headers['content-type'] || '', /^application\/json/);
    await sub.expectText(eventFrame('api-event', 'api-channel', '{"ok":1}'));
});

test('"channel" (singular) is accepted like "channels"', async () => {
    const r = await signedRequest(srv, 'POST', eventsPath(), { body: body({ name: 'single', channel: 'api-channel', data: 'x' }) });
    assert.equal(r.status, 200, r.body);
    await sub.expectText(eventFrame('single', 'api-channel', 'x'));
});

test('PHP-style URL-encoded query values (info=user_count%2Csubscription_count) verify against decoded values -> 200', async () => {
    const b = body(GOOD_EVENT);
    const p = signedPath({
        method: 'POST', path: eventsPath(), body: b, key: srv.key, secret: srv.secret,
        params: { info: 'user_count,subscription_count' }, encode: 'php',
    });
    assert.match(p, /info=user_count%2Csubscription_count/);
    const r = await httpRequest(srv.port, 'POST', p, { body: b });
    assert.equal(r.status, 200, r.body);
    assert.ok(r.json && typeof r.json === 'object', r.body);
    await sub.expectText(eventFrame('api-event', 'api-channel', '{"ok":1}'));
});

const UNAUTHORIZED = [
    ['a wrong secret', { signSecret: 'not-the-secret' }],
    ['a wrong auth_key', { key: 'not-the-key' }],
    /* computed when the request is made; 602: a clock second may pass on the way */
    ['a stale auth_timestamp (now - 602)', { timestamp: () => Math.floor(Date.now() / 1000) - 602 }],
    ['an auth_timestamp in the future (now + 602)', { timestamp: () => Math.floor(Date.now() / 1000) + 602 }],
    ['a body_md5 that does not match the body', { bodyMd5: md5('something else') }],
    ['a signature over another path', { signPath: '/apps/1/events' }],
];

for (const [name, sig] of UNAUTHORIZED) {
    test(`POST /events with ${name} -> 401 JSON error, nothing delivered`, async () => {
        const r = await signedRequest(srv, 'POST', eventsPath(), {
            body: body({ ...GOOD_EVENT, name: 'must-not-arrive' }),
            key: sig.key || srv.key,
            ...sig,
            ...(typeof sig.timestamp === 'function' ? { timestamp: sig.timestamp() } : {}),
        });
        assertJsonError(r, 401);
    });
}

test('POST /events without auth_signature -> 401', async () => {
    const b = body(GOOD_EVENT);
    const ts = Math.floor(Date.now() / 1000);
    const r = await httpRequest(srv.port, 'POST', `${eventsPath()}?auth_key=${srv.key}&auth_timestamp=${ts}&auth_version=1.0&body_md5=${md5(b)}`, { body: b });
    assertJsonError(r, 401);
});

test('POST /events with no query string at all -> 401', async () => {
    const r = await httpRequest(srv.port, 'POST', eventsPath(), { body: body(GOOD_EVENT) });
    assertJsonError(r, 401);
});

test('unknown app id -> 404', async () => {
    const b = body(GOOD_EVENT);
    const r = await httpRequest(srv.port, 'POST', signedPath({ method: 'POST', path: '/apps/999999/events', body: b, key: srv.key, secret: srv.secret }), { body: b });
    assert.equal(r.status, 404, r.body);
});

test('invalid JSON body (correctly signed) -> 400', async () => {
    const r = await signedRequest(srv, 'POST', eventsPath(), { body: '{"name": "x", ' });
    assertJsonError(r, 400);
});

const INVALID_400 = [
    ['no name', { channels: ['api-channel'], data: 'x' }],
    ['no channels', { name: 'e', data: 'x' }],
    ['an empty channels array', { name: 'e', channels: [], data: 'x' }],
    ['an invalid channel name', { name: 'e', channels: ['bad channel!'], data: 'x' }],
    ['a channel name of 201 chars', { name: 'e', channels: ['c'.repeat(201)], data: 'x' }],
    ['an event name of 201 chars', { name: 'e'.repeat(201), channels: ['api-channel'], data: 'x' }],
    ['101 channels', { name: 'e', channels: Array.from({ length: 101 }, (_, i) => `ch-${i}`), data: 'x' }],
    ['an invalid socket_id', { ...GOOD_EVENT, socket_id: 'abc' }],
    ['a JSON array body', [GOOD_EVENT]],
];

for (const [name, b] of INVALID_400) {
    test(`POST /events with ${name} -> 400`, async () => {
        const r = await signedRequest(srv, 'POST', eventsPath(), { body: body(b) });
        assertJsonError(r, 400);
    });
}

test('100 channels at once is allowed -> 200', async () => {
    const channels = Array.from({ length: 99 }, (_, i) => `ch-${i}`).concat(['api-channel']);
    const r = await signedRequest(srv, 'POST', eventsPath(), { body: body({ name: 'hundred', channels, data: 'h' }) });
    assert.equal(r.status, 200, r.body);
    await sub.expectText(eventFrame('hundred', 'api-channel', 'h'));
});

test('data of 10240 bytes -> 200 and delivered; 10241 bytes -> 413', async () => {
    const ok = 'a'.repeat(10240);
    const r1 = await signedRequest(srv, 'POST', eventsPath(), { body: body({ name: 'big', channels: ['api-channel'], data: ok }) });
    assert.equal(r1.status, 200, r1.body);
    await sub.expectText(eventFrame('big', 'api-channel', ok));
    const r2 = await signedRequest(srv, 'POST', eventsPath(), { body: body({ name: 'big', channels: ['api-channel'], data: 'a'.repeat(10241) }) });
    assertJsonError(r2, 413);
    await sub.expectNothing(200);
});

test('a batch of 10 -> 200 and delivered in order; a batch of 11 -> 400', async () => {
    const mk = (n) => ({ batch: Array.from({ length: n }, (_, i) => ({ name: `b${i}`, channel: 'api-channel', data: String(i) })) });
    const r1 = await signedRequest(srv, 'POST', batchPath(), { body: body(mk(10)) });
    assert.equal(r1.status, 200, r1.body);
    assert.ok(r1.json && typeof r1.json === 'object', r1.body);
    for (let i = 0; i < 10; i++) {
        await sub.expectText(eventFrame(`b${i}`, 'api-channel', String(i)));
    }
    const r2 = await signedRequest(srv, 'POST', batchPath(), { body: body(mk(11)) });
    assertJsonError(r2, 400);
    await sub.expectNothing(200);
});

test('a batch with one invalid item is rejected as a whole -> 400, nothing delivered', async () => {
    const b = { batch: [{ name: 'ok', channel: 'api-channel', data: '1' }, { name: 'bad', channel: 'bad channel!', data: '2' }] };
    const r = await signedRequest(srv, 'POST', batchPath(), { body: body(b) });
    assertJsonError(r, 400);
    await sub.expectNothing(200);
});

test('a batch with a wrong signature -> 401', async () => {
    const r = await signedRequest(srv, 'POST', batchPath(), { body: body({ batch: [{ name: 'x', channel: 'api-channel', data: '1' }] }), signSecret: 'nope' });
    assertJsonError(r, 401);
});

test('none of the rejected requests delivered anything', async () => {
    await sub.expectNothing(200);
});

test('the app secret never appears in error.log or the broker output', async () => {
    for (const f of ['error.log', 'broker.stderr', 'broker.stdout', 'nginx.stderr']) {
        let t = '';
        try {
            t = fs.readFileSync(srv.file(f), 'utf8');
        } catch {
            continue;
        }
        assert.ok(!t.includes(srv.secret), `${f} contains the app secret`);
    }
});
