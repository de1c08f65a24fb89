'use strict';
// Tests for graceful reload (SIGHUP) and shutdown (SIGQUIT).  A reload
// keeps the sockets of apps it leaves alone open in the old workers; the
// sockets of apps it changes or removes are told to reconnect with
// pusher:error 4200 + close 4200 and end up on the new workers.  A stop
// sends every socket 4200, also those an old worker kept over a reload.

const assert = require('node:assert/strict');
const { after } = require('node:test');

const fs = require('node:fs');

const { startServer, test, waitUntil, sleep, socketWorker, SLOW } = require('./lib/harness');
const { RawWs, OP } = require('./lib/rawws');
const {
    connectRaw, connectRawAcrossWorkers, connectAlternating, subscribeRaw, errorFrame, eventFrame, sdk, sdkTrigger, pusherJs, pjsSubscribe,
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

function statesOf(c) {
    return c.states.map((s) => `${s.current}`).join(' -> ');
}

test('SIGHUP reload that changes the app: its sockets get 4200; pusher-js is on a new worker within 2 s and receives events; old workers exit', { timeout: 30000 * SLOW }, async (t) => {
    const srv = await startServer();
    servers.push(srv);
    const api = sdk(srv);
    const raws = await connectRawAcrossWorkers(srv, 4);
    for (const ws of raws) {
        await subscribeRaw(ws, 'reload');
    }
    const c = await pusherJs(srv);
    const ch = await pjsSubscribe(c, 'reload');
    const got = [];
    ch.bind('after-reload', (d) => got.push(d));

    const t0 = Date.now();
    srv.rewriteConf({ app: { ping_interval: '61s' } });
    const { old, fresh } = await srv.reload();
    for (const ws of raws) {
        await expectShutdownClose(ws);
    }
    await waitUntil(() => c.connection.state === 'connected' && fresh.includes(socketWorker(c.connection.socket_id)), 2000,
        () => `pusher-js not connected to a new worker ${fresh} (old ${old}): socket_id ${c.connection.socket_id}, state ${c.connection.state}; states ${statesOf(c)}`);
    const tReconnect = Date.now() - t0;
    await waitUntil(() => ch.subscribed, 2000, 'pusher-js resubscribed after reconnect');
    /* the new workers may need a moment to attach to the broker */
    let n = 0;
    await waitUntil(async () => {
        await sdkTrigger(api, 'reload', 'after-reload', { n: n++ });
        return got.length > 0;
    }, 3000, 'no event reached pusher-js after the reload', 200);
    t.diagnostic(`reload: pusher-js on a new worker after ${tReconnect} ms; first event after ${Date.now() - t0} ms (${n} triggers); states ${statesOf(c)}`);
    await srv.waitGone(old, 3000);
    c.disconnect();
    await srv.stop();
});

test('5 reloads that change the app with 20 pusher-js clients: after each, every client is on a new worker and gets events; no old worker lingers', { timeout: 60000 * SLOW }, async () => {
    const srv = await startServer();
    servers.push(srv);
    const api = sdk(srv);
    const clients = [];
    for (let i = 0; i < 20; i++) {
        const c = await pusherJs(srv);
        c.got = [];
        (await pjsSubscribe(c, 'reloads')).bind('e', (d) => c.got.push(d.round));
        clients.push(c);
    }
    for (let round = 0; round < 5; round++) {
        srv.rewriteConf({ app: { ping_interval: `${61 + round}s` } });
        const { old, fresh } = await srv.reload();
        const describe = () => clients.map((c) => `${c.connection.socket_id}/${c.connection.state}`).join(' ');
        await waitUntil(() => clients.every((c) => c.connection.state === 'connected' && fresh.includes(socketWorker(c.connection.socket_id))), 3000,
            () => `round ${round}: clients not all on new workers ${fresh} (old ${old}): ${describe()}`);
        await waitUntil(() => clients.every((c) => c.channel('reloads').subscribed), 2000, `round ${round}: resubscribed`);
        await waitUntil(async () => {
            await sdkTrigger(api, 'reloads', 'e', { round });
            return clients.every((c) => c.got.includes(round));
        }, 3000, () => `round ${round}: clients without the event: ${clients.filter((c) => !c.got.includes(round)).map((c) => c.connection.socket_id)}`, 200);
        await srv.waitGone(old, 3000);
    }
    for (const c of clients) {
        c.disconnect();
    }
    await srv.stop();
});

test('SIGHUP reload that leaves an app alone: its sockets stay open on the old workers and keep working; a changed app reconnects; old workers exit when the kept sockets close', { timeout: 30000 * SLOW }, async () => {
    const other = { id: '902', key: 'other-key', secret: 'other-secret' };
    const srv = await startServer({ extraApps: [other] });
    servers.push(srv);
    const api = sdk(srv);
    const kept = await connectRawAcrossWorkers(srv, 2);
    for (const ws of kept) {
        await subscribeRaw(ws, 'kept');
    }
    const moved = await connectRawAcrossWorkers(srv, 2, { key: other.key });
    for (const ws of moved) {
        await subscribeRaw(ws, 'moved');
    }
    const oldWorkers = [...new Set(kept.map((ws) => ws.worker))];

    srv.rewriteConf({ extraApps: [{ ...other, app: { activity_timeout: '40s' } }] });
    const { old, fresh } = await srv.reload();
    assert.deepEqual([...old].sort(), [...oldWorkers].sort().map(Number));

    for (const ws of moved) {
        await expectShutdownClose(ws);
    }
    /* the changed app: new connections get its new settings */
    const again = await connectRaw(srv, { key: other.key, activityTimeout: 40 });
    assert.ok(fresh.includes(again.worker), `new connection on a new worker: ${again.worker} of ${fresh}`);
    again.close();

    for (const ws of kept) {
        await ws.expectNothing(300);
    }
    assert.ok(old.every(shuttingDownOrGone) && old.every((p) => fs.existsSync(`/proc/${p}`)),
        `old workers ${old} stay, shutting down, while they keep sockets`);
    /* events from the HTTP API still reach them, through the new workers' broker link too */
    await sdkTrigger(api, 'kept', 'after-reload', { n: 1 });
    for (const ws of kept) {
        await ws.expectText(eventFrame('after-reload', 'kept', { n: 1 }));
    }
    /* and they still talk: ping, subscribe */
    kept[0].sendJson({ event: 'pusher:ping', data: {} });
    await kept[0].expectText(JSON.stringify({ event: 'pusher:pong', data: '{}' }));
    await subscribeRaw(kept[1], 'kept-later');
    await sdkTrigger(api, 'kept-later', 'late', { n: 2 });
    await kept[1].expectText(eventFrame('late', 'kept-later', { n: 2 }));

    for (const ws of kept) {
        ws.sendClose(1000);
        await ws.expectClose(1000);
    }
    await srv.waitGone(old, 3000);
    await srv.stop();
});

test('reload that leaves an app alone, then worker_shutdown_timeout: every kept socket gets 4200 and its close frame before the TCP close', { timeout: 30000 * SLOW }, async () => {
    const srv = await startServer({ main: { worker_shutdown_timeout: '2s' } });
    servers.push(srv);
    const kept = await connectAlternating(srv, 40);
    for (const ws of kept) {
        await subscribeRaw(ws, 'kept');
    }
    const { old } = await srv.reload();
    for (const ws of kept) {
        await ws.expectNothing(0);
    }
    /* the old workers' timer fires 2 s after the reload */
    for (const ws of kept) {
        await ws.expectText(SHUTDOWN_ERROR, { timeout: 5000 });
        await ws.expectClose(4200, 'Server is shutting down');
        await ws.expectTcpClose(3000);
    }
    await srv.waitGone(old, 3000);
});

test('SIGQUIT after a reload: the sockets old workers kept get 4200 too, and nginx exits', { timeout: 30000 * SLOW }, async () => {
    const srv = await startServer();
    servers.push(srv);
    const kept = await connectRawAcrossWorkers(srv, 2);
    const { old } = await srv.reload();
    for (const ws of kept) {
        await ws.expectNothing(200);
    }
    const newer = await connectRawAcrossWorkers(srv, 2);
    const closes = [...kept, ...newer].map((ws) => expectShutdownClose(ws));
    const exit = await srv.quit(5000);
    await Promise.all(closes);
    assert.deepEqual(exit, { code: 0, signal: null }, 'nginx exit status');
    await srv.waitGone(old, 1000);
    await srv.stop();
});


function shuttingDownOrGone(pid) {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('shutting down');
    } catch {
        return true;
    }
}

test('an upgrade that an old worker reads after it began shutting down is told to reconnect (4200); old workers exit', { timeout: 30000 * SLOW }, async () => {
    const srv = await startServer();
    servers.push(srv);
    let openGate;
    const gate = new Promise((resolve) => {
        openGate = resolve;
    });
    /* TCP connections accepted by the old workers now, handshakes sent during their shutdown */
    const pending = [];
    for (let i = 0; i < 8; i++) {
        pending.push(RawWs.connect(srv.port, `/app/${srv.key}?protocol=7`, { gate, allowFail: true }).catch((e) => e));
    }
    await sleep(200);
    const { old } = await srv.reload();
    await waitUntil(() => old.every(shuttingDownOrGone), 3000, `old workers ${old} shutting down`);
    openGate();
    const results = await Promise.all(pending);
    const live = [];
    await Promise.all(results.map(async (r) => {
        if (r instanceof Error || !(r instanceof RawWs)) {
            /* refused (reset, or an HTTP error status) is fine: pusher-js retries */
            return;
        }
        srv.track(r);
        const f = await r.next({ timeout: 2000, skip: true, pred: (x) => x.opcode === OP.CLOSE, what: 'close 4200 from a shutting-down worker' }).catch((e) => e);
        if (f instanceof Error) {
            live.push(`${r.frames.length ? r.frames[0].text : '(no frame)'}`);
        } else {
            assert.equal(f.code, 4200, r.dump());
        }
    }));
    assert.deepEqual(live, [], `WebSockets left open on shutting-down workers ${old}`);
    await srv.waitGone(old, 3000);
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
    assert.deepEqual(exit, { code: 0, signal: null }, 'nginx exit status');
    await srv.stop();
});

test('SIGQUIT with a pusher-js client: it sees close 4200 and tries to reconnect at once', { timeout: 30000 * SLOW }, async () => {
    const srv = await startServer();
    servers.push(srv);
    const c = await pusherJs(srv);
    const before = c.states.length;
    const t0 = Date.now();
    await srv.quit(5000);
    /* 4200 means "reconnect now"; other closes make pusher-js wait 1 s */
    await waitUntil(() => c.states.slice(before).some((s) => s.current === 'connecting'), 700,
        () => `pusher-js did not reconnect at once; states ${statesOf(c)}`);
    assert.ok(c.states.slice(before).find((s) => s.current === 'connecting').t - t0 < 700);
    c.disconnect();
    await srv.stop();
});
