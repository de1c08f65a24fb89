'use strict';
// Tests that nginx keeps serving WebSockets while pusher-broker is down,
// picks the restarted broker up again, starts without a broker, and that
// the broker removes its shared-memory segment when it stops.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { before, after } = require('node:test');

const { startServer, test, httpRequest, sleep, SLOW } = require('./lib/harness');
const {
    connectRaw, connectRawAcrossWorkers, subscribeRaw, eventFrame, sdk, sdkTrigger, PONG, probeUntilDelivered,
} = require('./lib/clients');

let srv;
let api;

before(async () => {
    srv = await startServer();
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

test('the broker creates its named segment in /dev/shm and removes it on SIGTERM', async () => {
    assert.ok(fs.existsSync(srv.shmPath), `${srv.shmPath} missing while the broker runs`);
    const exit = await srv.stopBroker();
    assert.equal(fs.existsSync(srv.shmPath), false, `${srv.shmPath} still exists after SIGTERM (exit ${JSON.stringify(exit)})`);
    assert.deepEqual(exit, { code: 0, signal: null }, 'broker exit status on SIGTERM');
    await srv.startBroker();
    await srv.waitUp(5000);
    assert.ok(fs.existsSync(srv.shmPath), 'segment recreated by the restarted broker');
});

test('broker stop/start: WebSockets stay usable, /up fails then recovers, events reach the same subscribers on both workers', { timeout: 60000 * SLOW }, async (t) => {
    const socks = await connectRawAcrossWorkers(srv, 4);
    for (const ws of socks) {
        await subscribeRaw(ws, 'survivor');
    }
    await probeUntilDelivered(api, 'survivor', socks);
    await sdkTrigger(api, 'survivor', 'before', { n: 0 });
    for (const ws of socks) {
        await ws.expectText(eventFrame('before', 'survivor', { n: 0 }));
    }

    await srv.stopBroker();

    const up = await httpRequest(srv.port, 'GET', '/up');
    assert.ok([502, 503].includes(up.status), `/up with the broker down: ${up.status} ${up.body}`);
    const trig = await httpRequest(srv.port, 'POST', `/apps/${srv.appId}/events`, { body: '{}' });
    assert.ok([502, 503].includes(trig.status), `/apps with the broker down: ${trig.status}`);

    /* sockets stay open and usable without the broker; new ones connect */
    await sleep(300);
    for (const ws of socks) {
        assert.equal(ws.ended, false, `socket ${ws.socketId} closed when the broker stopped:\n${ws.dump()}`);
        ws.sendJson({ event: 'pusher:ping', data: {} });
        await ws.expectText(PONG);
        await subscribeRaw(ws, 'while-down');
    }
    const fresh = await connectRaw(srv);
    await subscribeRaw(fresh, 'survivor');
    await subscribeRaw(fresh, 'while-down');

    const t0 = Date.now();
    await srv.startBroker();
    await srv.waitUp(5000);
    const tUp = Date.now() - t0;

    const all = [...socks, fresh];
    const p = await probeUntilDelivered(api, 'while-down', all);
    t.diagnostic(`broker restart: /up 200 after ${tUp} ms; every socket receiving after ${Date.now() - t0} ms (${p.probes} probes)`);

    await sdkTrigger(api, 'survivor', 'after', { n: 1 });
    for (const ws of all) {
        await ws.expectText(eventFrame('after', 'survivor', { n: 1 }));
        assert.equal(ws.closeFrame, null);
    }
    for (const ws of all) {
        ws.close();
    }
});

test('after a broker restart, a trigger 1 s after the app is known again reaches subscribers on both workers', { timeout: 30000 * SLOW }, async () => {
    const socks = await connectRawAcrossWorkers(srv, 2);
    for (const ws of socks) {
        await subscribeRaw(ws, 'first-after');
    }
    await srv.restartBroker();
    await srv.waitUp(5000);
    /* the broker accepts events for the app once a worker re-attached;
       allow the other worker's reconnect timer one more second */
    await srv.waitReady(5000);
    await sleep(1000);
    await sdkTrigger(api, 'first-after', 'first', { n: 1 });
    for (const ws of socks) {
        await ws.expectText(eventFrame('first', 'first-after', { n: 1 }));
    }
    for (const ws of socks) {
        ws.close();
    }
});

test('repeated quick broker restarts leave nginx serving', { timeout: 60000 * SLOW }, async () => {
    const socks = await connectRawAcrossWorkers(srv, 2);
    for (const ws of socks) {
        await subscribeRaw(ws, 'flappy');
    }
    for (let i = 0; i < 3; i++) {
        await srv.restartBroker();
    }
    await srv.waitUp(5000);
    await probeUntilDelivered(api, 'flappy', socks);
    for (const ws of socks) {
        await subscribeRaw(ws, 'flappy-2');
        ws.close();
    }
});

test('nginx starts and serves WebSockets without a broker, and attaches when the broker appears', { timeout: 60000 * SLOW }, async () => {
    const s2 = await startServer({ broker: false });
    try {
        const up = await httpRequest(s2.port, 'GET', '/up');
        assert.ok([502, 503].includes(up.status), `/up without a broker: ${up.status}`);
        const socks = await connectRawAcrossWorkers(s2, 2);
        for (const ws of socks) {
            await subscribeRaw(ws, 'late');
        }
        await s2.startBroker();
        await s2.waitUp(5000);
        await probeUntilDelivered(sdk(s2), 'late', socks);
        for (const ws of socks) {
            ws.close();
        }
    } finally {
        await s2.stop();
    }
});
