'use strict';
// Webhooks (soketi's set), POSTed by pusher-broker to a receiver in this
// test that checks every request with the pusher SDK's webhook check
// (X-Pusher-Key and X-Pusher-Signature over the raw body): the exact event
// objects for channel_occupied/channel_vacated across both workers,
// member_added/member_removed once per user, client_event (user_id on
// presence only), cache_miss; the events= and suffix=/prefix= filters;
// two apps never mixed; a retry after a 500; webhook_vacated_delay; and
// max_request_size (413) on the HTTP API.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { before, after } = require('node:test');
const Pusher = require('pusher');

const {
    startServer, test, waitUntil, sleep, SLOW, TLS, TLS_CERT, TLS_KEY, HTTP_SCHEME,
} = require('./lib/harness');
const {
    connectRaw,
    connectAlternating,
    subscribeRaw,
    channelAuth,
    joinPresence,
    memberAddedFrame,
    memberRemovedFrame,
    succeededFrame,
    sdk,
    signedRequest,
} = require('./lib/clients');

/* app B: its own endpoint, a vacated delay; app C: a small body limit */
const B = { id: '7001', key: 'b-key', secret: 'b-secret' };
const C = { id: '7002', key: 'c-key', secret: 'c-secret', app: { max_request_size: '1k' } };

/*
 * The receiver: every request is kept with its SDK webhook; only events
 * of requests answered 2xx count as delivered.  failNext(path, status)
 * answers the next request to path with status.
 */
class Receiver {
    constructor() {
        this.requests = [];
        this.fail = new Map();
        this.cursor = new Map();
        this.apps = new Map();
    }

    start() {
        /* under PUSHER_TLS=1 the broker posts over https, verifying the certificate */
        const handler = (req, res) => {
            const chunks = [];
            req.on('data', (c) => chunks.push(c));
            req.on('end', () => {
                const path = req.url.split('?')[0];
                const status = this.fail.get(path) || 200;
                this.fail.delete(path);
                const rawBody = Buffer.concat(chunks).toString('utf8');
                this.requests.push({ path, url: req.url, method: req.method, headers: req.headers, rawBody, status, at: Date.now() });
                res.writeHead(status, { 'content-type': 'text/plain' });
                res.end(status === 200 ? 'ok' : 'oops');
            });
        };
        this.server = TLS
            ? https.createServer({ cert: fs.readFileSync(TLS_CERT), key: fs.readFileSync(TLS_KEY) }, handler)
            : http.createServer(handler);
        return new Promise((resolve) => {
            this.server.listen(0, '127.0.0.1', () => {
                this.port = this.server.address().port;
                resolve();
            });
        });
    }

    stop() {
        this.server.closeAllConnections();
        return new Promise((resolve) => this.server.close(resolve));
    }

    url(path) {
        return `${HTTP_SCHEME}://127.0.0.1:${this.port}${path}`;
    }

    /* which app's key and secret a path's requests must be signed with */
    expectApp(path, app) {
        this.apps.set(path, app);
    }

    at(path) {
        return this.requests.filter((r) => r.path === path);
    }

    /* delivered events of path, each request checked with the SDK */
    delivered(path) {
        const out = [];
        for (const r of this.at(path)) {
            const app = this.apps.get(path);
            const wh = new Pusher({ appId: app.id, key: app.key, secret: app.secret }).webhook({ headers: r.headers, rawBody: r.rawBody });
            assert.ok(wh.isValid(), `${r.url}: invalid webhook: ${JSON.stringify(r.headers)} ${r.rawBody}`);
            assert.equal(r.method, 'POST');
            assert.equal(r.headers['user-agent'], 'ngx-pusher');
            assert.equal(typeof wh.getTime(), 'object');
            assert.ok(Math.abs(wh.getTime().getTime() - r.at) < 60000, r.rawBody);
            assert.deepEqual(Object.keys(JSON.parse(r.rawBody)), ['time_ms', 'events'], r.rawBody);
            if (r.status === 200) {
                out.push(...wh.getEvents());
            }
        }
        return out;
    }

    /* the next events of path: exactly these (in order unless anyOrder) */
    async expect(path, events, { anyOrder = false, ms = 5000 } = {}) {
        const from = this.cursor.get(path) || 0;
        const got = await waitUntil(() => {
            const d = this.delivered(path);
            return d.length >= from + events.length && d.slice(from, from + events.length);
        }, ms, () => `${path}: expected ${JSON.stringify(events)}, have ${JSON.stringify(this.delivered(path).slice(from))}`);
        this.cursor.set(path, from + events.length);
        const key = (e) => JSON.stringify(e);
        if (anyOrder) {
            assert.deepEqual(got.map(key).sort(), events.map(key).sort());
        } else {
            assert.deepEqual(got, events);
        }
        return got;
    }

    /* nothing was delivered to path beyond what expect() took */
    assertDone(path) {
        const d = this.delivered(path);
        assert.deepEqual(d.slice(this.cursor.get(path) || 0), [], `${path}: unexpected events`);
    }
}

const hooks = new Receiver();
const PATHS = ['/all', '/presence', '/occ', '/b'];
let srv;
let api;

before(async () => {
    await hooks.start();
    srv = await startServer({
        app: {
            webhook: [
                `${hooks.url('/all')} header=X-Custom:v header=X-Pusher-Key:forged`,
                `${hooks.url('/presence?src=ngx')} events=member_added,member_removed prefix=presence-`,
                `${hooks.url('/occ')} events=channel_occupied,channel_vacated suffix=-x`,
            ],
        },
        extraApps: [
            { ...B, app: { webhook: hooks.url('/b'), webhook_vacated_delay: '1s' } },
            C,
        ],
    });
    api = sdk(srv);
    const main = { id: srv.appId, key: srv.key, secret: srv.secret };
    hooks.expectApp('/all', main);
    hooks.expectApp('/presence', main);
    hooks.expectApp('/occ', main);
    hooks.expectApp('/b', B);
});

after(async () => {
    await srv.stop();
    await hooks.stop();
});

const occupied = (channel) => ({ name: 'channel_occupied', channel });
const vacated = (channel) => ({ name: 'channel_vacated', channel });
const added = (channel, userId) => ({ name: 'member_added', channel, user_id: userId });
const removed = (channel, userId) => ({ name: 'member_removed', channel, user_id: userId });

/* the broker's subscriber count of a public channel */
async function waitCount(channel, n, app = api) {
    await waitUntil(async () => {
        const res = await app.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } });
        const j = await res.json();
        return (j.subscription_count || 0) === n;
    }, 5000, `${channel}: subscription_count ${n}`);
}

function unsubscribe(ws, channel) {
    ws.sendJson({ event: 'pusher:unsubscribe', data: { channel } });
}

test('channel_occupied on the first subscriber and channel_vacated after the last, across both workers', async () => {
    const [a, b] = await connectAlternating(srv, 2);
    assert.notEqual(a.worker, b.worker);
    await subscribeRaw(a, 'room');
    await hooks.expect('/all', [occupied('room')]);
    await subscribeRaw(b, 'room');
    await waitCount('room', 2);
    unsubscribe(a, 'room');
    await waitCount('room', 1);
    unsubscribe(b, 'room');
    await hooks.expect('/all', [vacated('room')]);

    /* a closed socket counts as leaving */
    await subscribeRaw(b, 'room');
    await hooks.expect('/all', [occupied('room')]);
    b.close();
    await hooks.expect('/all', [vacated('room')]);
    a.close();
});

test('member_added / member_removed once per user (first connection in, last out), user_id a string', async () => {
    const [a, b, c] = await connectAlternating(srv, 3);
    const ch = 'presence-team';
    await joinPresence(srv, a, ch, '1', { n: 'a' });
    await hooks.expect('/presence', [added(ch, '1')]);
    /* the same user (1 == "1") on the other worker: nothing */
    await joinPresence(srv, b, ch, 1, { n: 'b' });
    await joinPresence(srv, c, ch, 2);
    await hooks.expect('/presence', [added(ch, '2')]);
    a.close();
    await waitUntil(async () => {
        const res = await api.get({ path: `/channels/${ch}/users` });
        return (await res.json()).users.length === 2;
    }, 5000, 'users 1 (on b) and 2');
    unsubscribe(b, ch);
    await hooks.expect('/presence', [removed(ch, '1')]);
    c.close();
    await hooks.expect('/presence', [removed(ch, '2')]);
    await hooks.expect('/all', [occupied(ch), added(ch, '1'), added(ch, '2'), removed(ch, '1'), removed(ch, '2'), vacated(ch)], { anyOrder: true });
    b.close();
});

test('client_event: event, data, socket_id as sent, user_id on presence channels only', async () => {
    const [a, b] = await connectAlternating(srv, 2);
    const pch = 'presence-chat';
    await joinPresence(srv, a, pch, 'u1');
    await joinPresence(srv, b, pch, 'u2');
    await a.expectText(memberAddedFrame(pch, 'u2'));
    a.sendJson({ event: 'client-typing', channel: pch, data: { x: 1, s: 'é"' } });
    await b.expectText(JSON.stringify({ event: 'client-typing', channel: pch, data: { x: 1, s: 'é"' }, user_id: 'u1' }));
    await hooks.expect('/all', [
        occupied(pch), added(pch, 'u1'), added(pch, 'u2'),
    ], { anyOrder: true });
    await hooks.expect('/all', [{ name: 'client_event', channel: pch, event: 'client-typing', data: { x: 1, s: 'é"' }, socket_id: a.socketId, user_id: 'u1' }]);

    const ch = 'private-notes';
    await subscribeRaw(a, ch, channelAuth(srv.key, srv.secret, a.socketId, ch));
    await subscribeRaw(b, ch, channelAuth(srv.key, srv.secret, b.socketId, ch));
    await hooks.expect('/all', [occupied(ch)]);
    b.sendJson({ event: 'client-note', channel: ch, data: 'plain text' });
    await a.expectText(JSON.stringify({ event: 'client-note', channel: ch, data: 'plain text' }));
    await hooks.expect('/all', [{ name: 'client_event', channel: ch, event: 'client-note', data: 'plain text', socket_id: b.socketId }]);

    a.close();
    b.close();
    await hooks.expect('/all', [removed(pch, 'u1'), removed(pch, 'u2'), vacated(pch), vacated(ch)], { anyOrder: true });
    await hooks.expect('/presence', [added(pch, 'u1'), added(pch, 'u2'), removed(pch, 'u1'), removed(pch, 'u2')], { anyOrder: true });
});

test('cache_miss when a cache channel has nothing to replay; none after an event was cached', async () => {
    const ws = await connectRaw(srv);
    ws.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-empty"}}');
    await ws.expectText(succeededFrame('cache-empty'));
    await ws.expectText(JSON.stringify({ event: 'pusher:cache_miss', channel: 'cache-empty' }));
    await hooks.expect('/all', [occupied('cache-empty'), { name: 'cache_miss', channel: 'cache-empty' }], { anyOrder: true });

    await api.trigger('cache-full', 'e', { v: 1 });
    ws.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-full"}}');
    await ws.expectText(succeededFrame('cache-full'));
    await ws.expectText(JSON.stringify({ event: 'e', channel: 'cache-full', data: JSON.stringify({ v: 1 }) }));
    await hooks.expect('/all', [occupied('cache-full')]);
    ws.close();
    await hooks.expect('/all', [vacated('cache-empty'), vacated('cache-full')], { anyOrder: true });
});

test('events= and suffix= / prefix= filters: each endpoint gets only its events', async () => {
    const ws = await connectRaw(srv);
    await subscribeRaw(ws, 'lobby-x');
    await subscribeRaw(ws, 'lobby-y');
    await hooks.expect('/occ', [occupied('lobby-x')]);
    unsubscribe(ws, 'lobby-x');
    unsubscribe(ws, 'lobby-y');
    await hooks.expect('/occ', [vacated('lobby-x')]);
    await hooks.expect('/all', [occupied('lobby-x'), occupied('lobby-y'), vacated('lobby-x'), vacated('lobby-y')], { anyOrder: true });
    ws.close();
    /* the endpoint's query string is sent; custom headers, not over the Pusher ones */
    const p = hooks.at('/presence')[0];
    assert.equal(p.url, '/presence?src=ngx');
    for (const r of hooks.at('/all')) {
        assert.equal(r.headers['x-custom'], 'v');
        assert.equal(r.headers['x-pusher-key'], srv.key);
        assert.equal(r.headers['content-type'], 'application/json');
    }
    for (const r of hooks.at('/presence')) {
        assert.equal(r.headers['x-custom'], undefined);
    }
});

test('two apps never share a request: app B goes to its endpoint with its key; a 500 is retried with the same body', async () => {
    hooks.fail.set('/b', 500);
    const ws = await connectRaw(srv, { key: B.key });
    /* the same channel name as the default app's */
    await subscribeRaw(ws, 'room');
    await hooks.expect('/b', [occupied('room')], { ms: 8000 });
    const [first, retry] = hooks.at('/b');
    assert.equal(first.status, 500);
    assert.equal(retry.status, 200);
    assert.equal(retry.rawBody, first.rawBody, 'the same batch, time_ms included');
    assert.ok(retry.at - first.at >= 900, `retried after ${retry.at - first.at} ms`);
    for (const r of hooks.at('/b')) {
        assert.equal(r.headers['x-pusher-key'], B.key);
    }
    ws.close();
    await hooks.expect('/b', [vacated('room')], { ms: 5000 });
});

test('webhook_vacated_delay: a re-subscribe within it sends neither vacated nor occupied', async () => {
    const ws = await connectRaw(srv, { key: B.key });
    await subscribeRaw(ws, 'blink');
    await hooks.expect('/b', [occupied('blink')]);
    const n = hooks.at('/b').length;
    unsubscribe(ws, 'blink');
    await sleep(200);
    await subscribeRaw(ws, 'blink');
    await sleep(1500 * SLOW);
    assert.equal(hooks.at('/b').length, n, 'no request while re-occupied within the delay');
    const left = Date.now();
    unsubscribe(ws, 'blink');
    await hooks.expect('/b', [vacated('blink')]);
    const last = hooks.at('/b').at(-1);
    assert.ok(last.at - left >= 950, `vacated after ${last.at - left} ms`);
    ws.close();
});

test('the check is real: a receiver with the wrong secret or a changed body rejects the request', () => {
    const r = hooks.at('/all')[0];
    const good = new Pusher({ appId: srv.appId, key: srv.key, secret: srv.secret });
    const wrong = new Pusher({ appId: srv.appId, key: srv.key, secret: 'not-the-secret' });
    assert.equal(good.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), true);
    assert.equal(wrong.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false);
    assert.equal(good.webhook({ headers: r.headers, rawBody: r.rawBody.replace('channel', 'channeL') }).isValid(), false);
    const otherKey = new Pusher({ appId: B.id, key: B.key, secret: srv.secret });
    assert.equal(otherKey.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false);
});

test('max_request_size: 413 over the app\'s limit, 200 under it; other apps keep the default', async () => {
    const event = (n) => JSON.stringify({ name: 'e', channels: ['big'], data: 'x'.repeat(n) });
    const small = { key: C.key, secret: C.secret };
    let r = await signedRequest(srv, 'POST', `/apps/${C.id}/events`, { body: event(2000), ...small });
    assert.equal(r.status, 413, r.body);
    assert.deepEqual(r.json, { error: 'Request body is larger than 1024 bytes', code: 413 });
    r = await signedRequest(srv, 'POST', `/apps/${C.id}/events`, { body: event(500), ...small });
    assert.equal(r.status, 200, r.body);
    r = await signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, { body: event(2000) });
    assert.equal(r.status, 200, r.body);
});

/*
 * A broker restart is a restore, not news (pusher_ctl.h): members who
 * stayed are not announced again, to the clients or the webhook receiver;
 * a member who left while the broker was down is removed once; channels
 * that stayed occupied fire nothing; a channel vacated meanwhile fires
 * channel_vacated.
 */
test('broker killed with SIGKILL and restarted: stayed members and channels are silent, a member who left meanwhile gets member_removed once (frames and webhook), a channel vacated meanwhile gets channel_vacated', { timeout: 30000 * SLOW }, async () => {
    const ch = 'presence-outage';
    const [a, b, c, d] = await connectAlternating(srv, 4);
    await joinPresence(srv, a, ch, 'A');
    await joinPresence(srv, b, ch, 'B');
    await joinPresence(srv, c, ch, 'C');
    await subscribeRaw(d, 'stays');
    await subscribeRaw(c, 'goes');
    await hooks.expect('/all', [occupied(ch), added(ch, 'A'), added(ch, 'B'), added(ch, 'C'), occupied('stays'), occupied('goes')], { anyOrder: true });
    await hooks.expect('/presence', [added(ch, 'A'), added(ch, 'B'), added(ch, 'C')]);
    await sleep(200);
    const members = (ws) => ws.frames.filter((f) => f.text && /pusher_internal:member_(added|removed)/.test(f.text)).map((f) => f.text);
    const base = [a, b].map((ws) => members(ws).length);

    srv.allowLog(/\[crit\] .*connect\(\) to unix:\S*\/api\.sock failed/);
    srv.broker.stopping = true;
    srv.broker.kill('SIGKILL');
    await srv.broker.exited;
    /* C leaves, and "goes" empties, while there is no broker */
    c.close();
    await sleep(300);
    await srv.startBroker();
    await srv.waitUp(5000);

    const gone = memberRemovedFrame(ch, 'C');
    for (const ws of [a, b]) {
        await ws.next({ skip: true, timeout: 5000, pred: (f) => f.text === gone, what: gone });
    }
    await hooks.expect('/presence', [removed(ch, 'C')]);
    await hooks.expect('/all', [removed(ch, 'C'), vacated('goes')], { anyOrder: true });
    await sleep(1000);
    for (const [i, ws] of [a, b].entries()) {
        assert.deepEqual(members(ws).slice(base[i]), [gone], ws.dump());
    }
    hooks.assertDone('/all');
    hooks.assertDone('/presence');
    /* in the order the workers announced them */
    const res = await api.get({ path: `/channels/${ch}/users` });
    const { users } = await res.json();
    assert.deepEqual(users.map((u) => u.id).sort(), ['A', 'B'], JSON.stringify(users));
    assert.deepEqual(Object.keys(users[0]), ['id']);

    /* a new member sees both, and both see it once */
    const [e] = await connectAlternating(srv, 1);
    const p = await joinPresence(srv, e, ch, 'E');
    assert.deepEqual([...p.ids].sort(), ['A', 'B', 'E']);
    for (const ws of [a, b]) {
        await ws.expectText(memberAddedFrame(ch, 'E', null), { timeout: 3000 });
    }
    await hooks.expect('/all', [added(ch, 'E')]);
    await hooks.expect('/presence', [added(ch, 'E')]);

    for (const ws of [a, b, d, e]) {
        ws.close();
    }
    await hooks.expect('/all', [removed(ch, 'A'), removed(ch, 'B'), removed(ch, 'E'), vacated(ch), vacated('stays')], { anyOrder: true });
    await hooks.expect('/presence', [removed(ch, 'A'), removed(ch, 'B'), removed(ch, 'E')], { anyOrder: true });
});

test('nothing else was sent to any endpoint', async () => {
    await sleep(300);
    for (const p of PATHS) {
        hooks.assertDone(p);
    }
});
