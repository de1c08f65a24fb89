'use strict';
// pusher_debug: the debug view (README, "Debugging").  With the directive
// every worker logs its "pusher debug:" lines to error.log at [notice] and
// the broker to its stderr: a connection, a good and two refused private
// subscribes with their reasons, a client event, a trigger with its answer
// and the delivery count of each worker, a webhook request, a close.
// Neither log ever holds the app secret or an auth signature.  Without the
// directive none of these lines appear.

const assert = require('node:assert/strict');
const http = require('node:http');
const { before, after } = require('node:test');

const { startServer, test, waitUntil, httpRequest } = require('./lib/harness');
const { connectRaw, subscribeRaw, eventFrame, errorFrame, sdk, sdkTrigger, channelAuth, PONG } = require('./lib/clients');
const { signedPath } = require('./lib/sign');
const { RawWs } = require('./lib/rawws');

const ORIGIN = 'http://app.test';

let hooks;
let hookPort;
let hookBodies = [];
let srv;
let quiet;

/* the webhook receiver: answers 200 and keeps the bodies */
function startHooks() {
    return new Promise((resolve) => {
        hooks = http.createServer((req, res) => {
            let body = '';
            req.on('data', (c) => {
                body += c;
            });
            req.on('end', () => {
                hookBodies.push(body);
                res.end('ok');
            });
        });
        hooks.listen(0, '127.0.0.1', () => resolve(hooks.address().port));
    });
}

before(async () => {
    hookPort = await startHooks();
    srv = await startServer({
        http: { pusher_debug: 'on' },
        app: { webhook: `http://127.0.0.1:${hookPort}/hook events=channel_occupied` },
    });
    /* without the directive */
    quiet = await startServer();
    /* a starting broker restores the workers' state first, and sends no
       webhook for what happens meanwhile */
    for (const s of [srv, quiet]) {
        await waitUntil(() => s.tail('broker.stderr', 1e9).includes("restored the workers' state"), 5000, 'the broker restored');
    }
});

after(async () => {
    await srv.stop();
    await quiet.stop();
    hooks.close();
});

/* the "pusher debug:" lines of error.log, each as {pid, text} */
function workerLines(s) {
    return s
        .errorLog()
        .split('\n')
        .map((l) => l.match(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[notice\] (\d+)#\d+: pusher debug: (.*)$/))
        .filter(Boolean)
        .map((m) => ({ pid: Number(m[1]), text: m[2] }));
}

/* the "pusher debug:" lines of the broker's log, as text */
function brokerLines(s) {
    return s
        .tail('broker.stderr', 1e9)
        .split('\n')
        .filter((l) => l.startsWith('pusher-broker: pusher debug: '))
        .map((l) => l.slice('pusher-broker: pusher debug: '.length));
}

/* waits until lines() holds want (exactly, as one line) */
async function expectLine(lines, want, what) {
    await waitUntil(() => lines().includes(want), 3000, () => `${what}: no line ${JSON.stringify(want)} in:\n  ${lines().join('\n  ')}`);
}

function signedTrigger(s, body, secret = s.secret) {
    return signedPath({ method: 'POST', path: `/apps/${s.appId}/events`, body: JSON.stringify(body), key: s.key, secret });
}

/* a socket's walk through what the debug view shows; returns what it used */
async function walk(s) {
    const api = sdk(s);
    const ws = await connectRaw(s, { headers: { Origin: ORIGIN } });
    const other = await connectRaw(s);

    /* public, then private with a good signature */
    await subscribeRaw(ws, 'orders');
    const good = channelAuth(s.key, s.secret, ws.socketId, 'private-orders');
    await subscribeRaw(ws, 'private-orders', good);

    /* a signature made for another socket: refused */
    const stolen = channelAuth(s.key, s.secret, other.socketId, 'private-secret');
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: stolen, channel: 'private-secret' } });
    const refused = await ws.nextEvent();
    assert.equal(refused.event, 'pusher:subscription_error', refused.raw);

    /* no auth at all (the app's auth endpoint said no) */
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: 'private-none' } });
    assert.equal((await ws.nextEvent()).event, 'pusher:subscription_error');

    /* a client event on the private channel (nobody else to get it) */
    ws.sendJson({ event: 'client-typing', channel: 'private-orders', data: { name: 'Ann' } });
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.expectText(PONG);

    /* an event from the HTTP API, and one with a wrong secret */
    const r = await sdkTrigger(api, 'orders', 'OrderShipped', { orderId: 7 });
    assert.equal(r.status, 200);
    await ws.expectText(eventFrame('OrderShipped', 'orders', { orderId: 7 }));
    const bad = { name: 'OrderShipped', channel: 'orders', data: '{"orderId":8}' };
    const denied = await httpRequest(s.port, 'POST', signedTrigger(s, bad, 'wrong-secret'), { body: JSON.stringify(bad), tls: s.tls });
    assert.equal(denied.status, 401);

    ws.sendJson({ event: 'pusher:unsubscribe', data: { channel: 'private-orders' } });
    ws.sendClose(1000, '');
    await ws.expectClose(1000);
    other.close();
    return { ws, other, good, stolen };
}

test('pusher_debug on: connection, subscriptions with reasons, client event, trigger, deliveries, webhook, close', async () => {
    const { ws, other, good, stolen } = await walk(srv);
    const sid = ws.socketId;
    const pid = ws.worker;
    const lines = () => workerLines(srv).filter((l) => l.pid === pid).map((l) => l.text);
    const all = () => workerLines(srv).map((l) => `${l.pid} ${l.text}`);

    await expectLine(lines, `connect socket ${sid} app ${srv.appId} origin "${ORIGIN}" worker ${pid}`, 'connection');
    await expectLine(lines, `subscribe socket ${sid} channel "orders": ok`, 'public subscribe');
    await expectLine(lines, `subscribe socket ${sid} channel "private-orders": ok (signature valid)`, 'private subscribe');
    await expectLine(
        lines,
        `subscribe socket ${sid} channel "private-secret": refused AuthError 401 "Invalid signature": the signature is not that of socket_id:channel with this app's secret (signed for another socket_id or channel, or with another secret)`,
        'refused subscribe',
    );
    await expectLine(
        lines,
        `subscribe socket ${sid} channel "private-none": refused AuthError 401 "Invalid signature": no auth in the subscribe (the client got no signature from the app's auth endpoint)`,
        'subscribe without auth',
    );
    await expectLine(lines, `client event "client-typing" socket ${sid} channel "private-orders" data 14 bytes: relayed to the broker`, 'client event');
    /* the frame: {"event":"OrderShipped","channel":"orders","data":"{\"orderId\":7}"} */
    const frame = eventFrame('OrderShipped', 'orders', { orderId: 7 });
    await expectLine(lines, `deliver event "OrderShipped" app ${srv.appId} channel "orders" (${frame.length} bytes): 1 local socket`, 'delivery');
    /* the other worker has no subscriber of it */
    const otherPid = srv.workerPids().find((p) => p !== pid);
    await expectLine(all, `${otherPid} deliver event "OrderShipped" app ${srv.appId} channel "orders" (${frame.length} bytes): 0 local sockets`, 'delivery elsewhere');
    /* the client event comes back through the ring, its sender excluded */
    await expectLine(lines, `deliver event "client-typing" app ${srv.appId} channel "private-orders" (${JSON.stringify({ event: 'client-typing', channel: 'private-orders', data: { name: 'Ann' } }).length} bytes): 0 local sockets, excluded socket ${sid}`, 'client event delivery');
    await expectLine(lines, `unsubscribe socket ${sid} channel "private-orders"`, 'unsubscribe');
    await waitUntil(() => lines().some((l) => l.startsWith(`close socket ${sid}: `)), 3000, 'close line');
    const close = lines().find((l) => l.startsWith(`close socket ${sid}: `));
    assert.match(close, new RegExp(`^close socket ${sid.replace('.', '\\.')}: code 1000 by the client after \\d+ ms, leaving 1 channel$`));
    /* the other socket dropped its TCP connection without a close frame */
    const otherLines = () => workerLines(srv).filter((l) => l.pid === other.worker).map((l) => l.text);
    await waitUntil(() => otherLines().some((l) => l.startsWith(`close socket ${other.socketId}: connection lost`)), 3000, 'lost connection line');
    assert.match(
        otherLines().find((l) => l.startsWith(`close socket ${other.socketId}: `)),
        new RegExp(`^close socket ${other.socketId.replace('.', '\\.')}: connection lost without a close frame after \\d+ ms, leaving 0 channels$`),
    );

    /* the broker: the triggers with their answers, the webhook request */
    const b = () => brokerLines(srv);
    await expectLine(b, `trigger app ${srv.appId} event "OrderShipped" channel "orders" data 13 bytes: 200 published`, 'trigger');
    await expectLine(b, `trigger app ${srv.appId}: 401 {"error":"Invalid signature","code":401}`, 'refused trigger');
    await waitUntil(() => hookBodies.length > 0, 3000, 'a webhook request');
    const webhook = `webhook http://127.0.0.1:${hookPort}/hook of app ${srv.appId}: channel_occupied 1 in ${hookBodies[0].length} bytes, attempt 1: delivered`;
    await expectLine(b, webhook, 'webhook');

    /* never a secret or a signature */
    const logs = `${srv.errorLog()}\n${srv.tail('broker.stderr', 1e9)}`;
    assert.ok(!logs.includes(srv.secret), 'the app secret is in a log');
    for (const auth of [good, stolen]) {
        const digest = auth.split(':')[1];
        assert.equal(digest.length, 64);
        assert.ok(!logs.includes(digest), `an auth signature is in a log: ${digest}`);
    }
    assert.ok(!logs.includes('wrong-secret'));
    /* (nginx's own [info] lines may quote a request line with its query,
       as its access log does: only what this project writes is checked) */
    const ours = `${workerLines(srv).map((l) => l.text).join('\n')}\n${srv.tail('broker.stderr', 1e9)}`;
    assert.ok(!/auth_signature=[0-9a-f]{64}/.test(ours), 'an API signature is in a log');
    /* nor event data: only sizes */
    assert.ok(!logs.includes('orderId'), 'event data is in a log');
    assert.ok(!logs.includes('"Ann"'), 'client event data is in a log');
    /* the broker says the table it took has pusher_debug on */
    assert.match(srv.tail('broker.stderr', 1e9), /app table from the nginx master \([^)]+control\.sock\.apps\): 1 app\(s\), conf_time \d+, pusher_debug on/);
});

test('a presence subscribe with invalid channel_data and a connection to an unknown key say why', async () => {
    const ws = await connectRaw(srv);
    const channelData = JSON.stringify({ user_info: { name: 'Ann' } });
    const auth = channelAuth(srv.key, srv.secret, ws.socketId, 'presence-room', channelData);
    ws.sendJson({ event: 'pusher:subscribe', data: { auth, channel_data: channelData, channel: 'presence-room' } });
    assert.equal((await ws.nextEvent()).event, 'pusher:subscription_error');
    const lines = () => workerLines(srv).filter((l) => l.pid === ws.worker).map((l) => l.text);
    await expectLine(
        lines,
        `subscribe socket ${ws.socketId} channel "presence-room": refused AuthError 401 "Invalid channel_data": channel_data is not a JSON object with a user_id that is a number or a non-empty string`,
        'presence channel_data',
    );
    ws.close();
    assert.ok(!srv.errorLog().includes(auth.split(':')[1]));

    const lost = await RawWs.connect(srv.port, '/app/no-such-key?protocol=7', { tls: srv.tls, headers: { Origin: ORIGIN } });
    srv.track(lost);
    await lost.expectText(errorFrame(4001, 'Application does not exist'));
    await lost.expectClose(4001, 'Application does not exist');
    const any = () => workerLines(srv).map((l) => `${l.pid} ${l.text}`);
    await waitUntil(
        () => srv.workerPids().some((p) => any().includes(`${p} connect app (unknown key) origin "${ORIGIN}" worker ${p}: refused 4001`)),
        3000,
        () => `no refused connection line in:\n  ${any().join('\n  ')}`,
    );
    lost.close();
});

test('without pusher_debug: none of these lines', async () => {
    await walk(quiet);
    /* the events went through; give the logs a moment */
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(workerLines(quiet).length, 0, quiet.errorLog());
    assert.ok(!quiet.errorLog().includes('pusher debug'), quiet.errorLog());
    assert.ok(!quiet.tail('broker.stderr', 1e9).includes('pusher debug'), quiet.tail('broker.stderr', 1e9));
    assert.doesNotMatch(quiet.tail('broker.stderr', 1e9), /pusher_debug on/);
});
