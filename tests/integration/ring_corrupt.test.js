'use strict';
// A corrupt ring descriptor in the broker's segment: tail ahead of the
// workers, tail_intent a long way past it and latest behind it, so that
// every read laps and comes back to where it started.  A worker laps at
// most twice in a row, says once at [error] that the ring looks corrupt
// and reads again every 100 ms instead of spinning: its CPU stays low,
// the lap warning comes at most once a second, nginx keeps answering.  A
// restarted broker (a new segment, named by WELCOME) brings it back.
//
// Nothing but the workers' 1 s safety poll reads the ring after the
// corruption: an event would make the broker rewrite the descriptor.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const { before, after } = require('node:test');

const { startServer, test, httpRequest, sleep, waitUntil, SLOW } = require('./lib/harness');
const {
    connectRaw, connectRawAcrossWorkers, subscribeRaw, errorFrame, sdk, probeUntilDelivered,
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

const TICKS = Number(childProcess.execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/* common/pusher_shm.h: header.ring_capacity, then the descriptor at 128 */
const RING_CAPACITY = 72;
const DESC = 128;

/*
 * tail 1 MiB ahead of the workers (who are caught up), tail_intent 64
 * rings past it: whatever a worker reads was overwritten; latest, where a
 * lap resumes, is where it already was
 */
function corruptDescriptor() {
    const fd = fs.openSync(srv.shmPath, 'r+');
    try {
        const head = Buffer.alloc(DESC + 32);
        fs.readSync(fd, head, 0, head.length, 0);
        const capacity = head.readBigUInt64LE(RING_CAPACITY);
        const tail = head.readBigUInt64LE(DESC + 8);
        const bad = tail + 1024n * 1024n;
        const desc = Buffer.alloc(24);
        desc.writeBigUInt64LE(bad + 64n * capacity, 0);     /* tail_intent */
        desc.writeBigUInt64LE(bad, 8);                      /* tail */
        desc.writeBigUInt64LE(tail, 16);                    /* latest */
        fs.writeSync(fd, desc, 0, desc.length, DESC);
        return { capacity, tail };
    } finally {
        fs.closeSync(fd);
    }
}

/* utime + stime of a process, in clock ticks */
function cpuTicks(pid) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
}

/* error.log lines after offset: {level, pid, text} */
function logLines(offset) {
    return srv.errorLog().slice(offset).split('\n').map((l) => {
        const m = l.match(/ \[(\w+)\] (\d+)#\d+: /);
        return m ? { level: m[1], pid: Number(m[2]), text: l } : null;
    }).filter(Boolean);
}

const LAP_RE = /fell a whole ring behind the broker/;
const CORRUPT_RE = /ring looks corrupt/;

function count(lines, pid, level, re) {
    return lines.filter((l) => l.pid === pid && l.level === level && re.test(l.text)).length;
}

test('a descriptor on which every read laps: each worker says so once, warns at most once a second, stays idle and answers; a restarted broker brings it back', { timeout: 60000 * SLOW }, async (t) => {
    const workers = srv.workerPids();
    assert.equal(workers.length, 2);
    const socks = await connectRawAcrossWorkers(srv, 2);
    for (const ws of socks) {
        await subscribeRaw(ws, 'watched');
    }
    /* every worker has read up to the tail */
    await probeUntilDelivered(api, 'watched', socks);

    const offset = srv.errorLog().length;
    const t0 = Date.now();
    const { capacity, tail } = corruptDescriptor();
    t.diagnostic(`ring of ${capacity} bytes, tail ${tail}: descriptor corrupted`);

    /* the safety poll reads the ring within a second: a lap, as any */
    await waitUntil(() => workers.every((pid) => count(logLines(offset), pid, 'warn', LAP_RE) > 0),
        3000 * SLOW, () => `not every worker lapped:\n${srv.errorLog().slice(offset, offset + 3000)}`);
    for (const ws of socks) {
        await ws.expectText(errorFrame(4200, 'Missed events after a pause, reconnect'), { timeout: 2000 * SLOW });
        await ws.expectClose(4200, 'Missed events after a pause, reconnect');
    }

    /* a second of the corrupt ring */
    const before = new Map(workers.map((pid) => [pid, cpuTicks(pid)]));
    const m0 = Date.now();
    const up0 = Date.now();
    /* checked after the CPU: a spinning worker may not answer at all */
    const up = await httpRequest(srv.port, 'GET', '/up', { timeout: 1000 * SLOW }).catch((e) => ({ status: 0, body: e.message }));
    const upMs = Date.now() - up0;
    await sleep(Math.max(0, 1000 - (Date.now() - m0)));
    const seconds = (Date.now() - m0) / 1000;
    const used = workers.map((pid) => (cpuTicks(pid) - before.get(pid)) / TICKS / seconds);
    t.diagnostic(`workers' CPU over ${seconds.toFixed(2)} s of a corrupt ring: ${used.map((u) => `${(u * 100).toFixed(0)}%`).join(', ')}; /up in ${upMs} ms`);
    for (const [i, u] of used.entries()) {
        assert.ok(u < 0.2, `worker ${workers[i]} used ${(u * 100).toFixed(0)}% CPU over ${seconds.toFixed(2)} s`);
    }
    assert.equal(up.status, 200, `/up: ${up.status} ${up.body}`);
    assert.ok(upMs < 500 * SLOW, `/up took ${upMs} ms`);

    /* a new subscriber is served while the ring is corrupt */
    const fresh = await connectRaw(srv);
    await subscribeRaw(fresh, 'during');

    const lines = logLines(offset);
    const since = Math.ceil((Date.now() - t0) / 1000);
    for (const pid of workers) {
        const laps = count(lines, pid, 'warn', LAP_RE);
        const corrupt = count(lines, pid, 'error', CORRUPT_RE);
        t.diagnostic(`worker ${pid}: ${laps} lap warnings, ${corrupt} "looks corrupt" in ${since} s`);
        assert.ok(laps <= 2 * since, `worker ${pid}: ${laps} lap warnings in ${since} s`);
        assert.equal(corrupt, 1, `worker ${pid}: ${corrupt} "looks corrupt" lines`);
    }
    fresh.close();

    /* a new broker, a new segment */
    await srv.stopBroker();
    await srv.startBroker();
    await srv.waitUp(5000);
    await srv.waitReady(5000);
    const again = await connectRawAcrossWorkers(srv, 2);
    for (const ws of again) {
        await subscribeRaw(ws, 'watched');
    }
    await probeUntilDelivered(api, 'watched', again);

    /* and no lap since */
    const quiet = srv.errorLog().length;
    await sleep(1500);
    const late = logLines(quiet).filter((l) => LAP_RE.test(l.text) || CORRUPT_RE.test(l.text));
    assert.deepEqual(late.map((l) => l.text), []);
    for (const ws of again) {
        assert.equal(ws.closeFrame, null, ws.dump());
        ws.close();
    }
});

test('workers with a corrupt ring exit on reload and on SIGQUIT (the retry timer goes with them); an event written over the descriptor heals it for the new ones', { timeout: 60000 * SLOW }, async () => {
    const corruptIn = async (workers, offset) => {
        corruptDescriptor();
        await waitUntil(() => workers.every((pid) => count(logLines(offset), pid, 'error', CORRUPT_RE) === 1),
            3000 * SLOW, () => `not every worker of ${workers} found the ring corrupt:\n${srv.errorLog().slice(offset, offset + 3000)}`);
    };

    await corruptIn(srv.workerPids(), srv.errorLog().length);
    const { old, fresh } = await srv.reload();
    await srv.waitGone(old, 5000 * SLOW);

    /* the new workers start at the tail; the broker's next record rewrites the descriptor */
    const socks = await connectRawAcrossWorkers(srv, 2);
    assert.deepEqual([...new Set(socks.map((ws) => ws.worker))].sort((a, b) => a - b), [...fresh].sort((a, b) => a - b));
    for (const ws of socks) {
        await subscribeRaw(ws, 'healed');
    }
    await probeUntilDelivered(api, 'healed', socks);
    for (const ws of socks) {
        ws.close();
    }

    /* and srv.stop() quits nginx while these retry */
    await corruptIn(fresh, srv.errorLog().length);
});
