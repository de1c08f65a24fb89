'use strict';
// Tests for graceful reload (SIGHUP) and shutdown (SIGQUIT): every open
// WebSocket is told to reconnect with pusher:error 4200 + close 4200.

const assert = require('node:assert/strict');
const { after } = require('node:test');

const { startServer, test, waitUntil, socketWorker, SLOW } = require('./lib/harness');
const {
    connectRawAcrossWorkers, subscribeRaw, errorFrame, sdk, sdkTrigger, pusherJs, pjsSubscribe, waitState,
} = require('./lib/clients');

const SHUTDOWN_ERROR = errorFrame(4200, 'Server is shutting down');

const servers = [];

after(async () => {
    for (const s of servers) {
        await s.stop();
    }
});

async function expectShutdownClose(ws) {
    await ws.expectText(SHUTDOWN_ERROR, { timeout: 3000 });
    await ws.expectClose(4200, 'Server is shutting down');
    ws.sendClose(4200);
    await ws.expectTcpClose(3000);
}

test('SIGHUP reload: old sockets get 4200, pusher-js reconnects within 2 s and receives events', { timeout: 30000 * SLOW }, async (t) => {
    const srv = await startServer();
    servers.push(srv);
    const api = sdk(srv);
    const raws = await connectRawAcrossWorkers(srv, 4);
    for (const ws of raws) {
        await subscribeRaw(ws, 'reload');
    }
    const c = await pusherJs(srv);
    const oldId = c.connection.socket_id;
    const ch = await pjsSubscribe(c, 'reload');
    const got = [];
    ch.bind('after-reload', (d) => got.push(d));

    const oldWorkers = srv.workerPids();
    const t0 = Date.now();
    await srv.reload();
    for (const ws of raws) {
        await expectShutdownClose(ws);
    }
    await waitUntil(() => c.connection.state === 'connected' && c.connection.socket_id !== oldId, 2000,
        () => `pusher-js did not reconnect; states ${c.states.map((s) => s.current).join(' -> ')}`);
    const tReconnect = Date.now() - t0;
    const newWorker = socketWorker(c.connection.socket_id);
    assert.ok(!oldWorkers.includes(newWorker), `reconnected to old worker ${newWorker}`);
    assert.ok(srv.workerPids().includes(newWorker), `socket_id ${c.connection.socket_id} is not from a new worker ${srv.workerPids()}`);
    /* pusher-js resubscribes by itself; wait until the server confirms it */
    await waitUntil(() => ch.subscribed, 2000, 'pusher-js resubscribed after reconnect');
    /* the new workers may need a moment to attach to the broker */
    let n = 0;
    await waitUntil(async () => {
        await sdkTrigger(api, 'reload', 'after-reload', { n: n++ });
        return got.length > 0;
    }, 3000, 'no event reached pusher-js after the reload', 200);
    t.diagnostic(`reload: pusher-js reconnected after ${tReconnect} ms; first event after ${Date.now() - t0} ms (${n} triggers)`);
    assert.deepEqual(got[0], { n: got[0].n });
    c.disconnect();
    await srv.stop();
});

test('SIGQUIT: every open WebSocket on both workers gets pusher:error 4200 then close 4200 "Server is shutting down"; nginx exits', { timeout: 30000 * SLOW }, async () => {
    const srv = await startServer();
    servers.push(srv);
    const raws = await connectRawAcrossWorkers(srv, 6);
    for (const ws of raws.slice(0, 3)) {
        await subscribeRaw(ws, 'quit');
    }
    const closes = raws.map((ws) => expectShutdownClose(ws));
    const exit = await srv.quit(5000);
    await Promise.all(closes);
    assert.equal(exit.code, 0, `nginx exit ${JSON.stringify(exit)}`);
    await srv.stop();
});

test('SIGQUIT with a pusher-js client: it sees close 4200 and tries to reconnect at once', { timeout: 30000 * SLOW }, async () => {
    const srv = await startServer();
    servers.push(srv);
    const c = await pusherJs(srv);
    const before = c.states.length;
    await srv.quit(5000);
    await waitUntil(() => c.states.slice(before).some((s) => s.current === 'connecting'), 2000,
        () => `pusher-js did not try to reconnect; states ${c.states.map((s) => s.current).join(' -> ')}`);
    c.disconnect();
    await srv.stop();
});
