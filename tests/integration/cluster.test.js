'use strict';
// pusher_cluster (docs/cluster.md): two hosts (nginx, 2 workers, and its
// broker each, their own shm and sockets) on one redis-server started here.
// nginx -t checks the directive; an HTTP API event triggered on either
// host reaches the subscribers of both exactly once, with socket_id
// exclusion across hosts; a client event reaches the members on the other
// host; a Redis outage leaves each host's own delivery working, says so in
// /metrics and the log, and cross-host delivery comes back with Redis.

const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { before, after } = require('node:test');

const {
    nginxTest, startServer, test, waitUntil, freePort, httpRequest, sleep, SLOW,
} = require('./lib/harness');
const { connectRaw, subscribeRaw, errorFrame, sdk, sdkTrigger, pusherJs, pjsSubscribe } = require('./lib/clients');
const { channelAuth } = require('./lib/sign');

const REDIS = '/usr/bin/redis-server';

test('nginx -t checks pusher_cluster: the URL, prefix= and node=, never echoing a password', () => {
    const cases = [
        ['ftp://h', 'pusher_cluster: invalid Redis URL: '],
        ['redis://:s3cret@h:99999', 'pusher_cluster: invalid Redis URL: '],
        ['redis://h prefix=a%b', 'pusher_cluster: invalid prefix: character 2 is not one of A-Z a-z 0-9 _-.:{}'],
        ['redis://h prefix=', 'pusher_cluster: invalid empty prefix'],
        ['redis://h node=a:b', 'pusher_cluster: invalid node: character 2 is not one of A-Z a-z 0-9 _-.'],
        [`redis://h node=${'n'.repeat(65)}`, 'pusher_cluster: invalid node longer than 64 characters'],
        ['redis://h colour=blue', 'pusher_cluster: unknown parameter "colour=blue" (prefix= or node=)'],
        ['redis://h node=a node=b', '"pusher_cluster" directive has node= twice'],
        ['redis://h prefix=a prefix=b', '"pusher_cluster" directive has prefix= twice'],
        [['redis://h', 'redis://g'], '"pusher_cluster" directive is duplicate'],
    ];
    for (const [value, want] of cases) {
        const r = nginxTest({ http: { pusher_cluster: value } });
        assert.notEqual(r.status, 0, `nginx -t accepted pusher_cluster ${value}`);
        assert.ok(r.emerg && r.emerg.startsWith(want), `pusher_cluster ${value}: got ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /s3cret/, 'the password is not in the message');
    }
    for (const value of ['redis://127.0.0.1', 'rediss://:p%40ss@redis.example:6380/2?verify=0 "prefix={app}:" node=web-1',
                         'unix:///run/redis/redis.sock?db=3 node=a.b_c']) {
        const r = nginxTest({ http: { pusher_cluster: value } });
        assert.equal(r.status, 0, `pusher_cluster ${value}: ${r.stderr}`);
    }
});

/* a redis-server of this test on a free loopback port, no persistence */
class Redis {
    async start(port) {
        this.port = port || this.port || await freePort();
        this.proc = spawn(REDIS, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
                                  '--appendonly', 'no', '--protected-mode', 'no'],
                          { stdio: ['ignore', 'pipe', 'pipe'] });
        this.out = '';
        this.proc.stdout.on('data', (d) => { this.out += d; });
        this.proc.stderr.on('data', (d) => { this.out += d; });
        await waitUntil(() => /Ready to accept connections/.test(this.out), 5000, () => `redis-server did not start:\n${this.out}`);
    }

    async stop() {
        if (!this.proc || this.proc.exitCode !== null) {
            return;
        }
        const exited = new Promise((resolve) => this.proc.once('exit', resolve));
        this.proc.kill('SIGKILL');
        await exited;
    }
}

let redis;
let a;
let b;

async function metrics(srv) {
    const r = await httpRequest(srv.port, 'GET', '/metrics', { tls: srv.tls });
    assert.equal(r.status, 200);
    return r.body;
}

function sample(text, name) {
    const m = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
}

async function linksUp(srv, up) {
    await waitUntil(async () => {
        const t = await metrics(srv);
        return sample(t, 'pusher_cluster_redis_up{link="publish"}') === up
            && sample(t, 'pusher_cluster_redis_up{link="subscribe"}') === up;
    }, 8000, () => `${srv.port}: the Redis links not ${up ? 'up' : 'down'}`);
}

before(async () => {
    redis = new Redis();
    await redis.start();
    const url = `redis://127.0.0.1:${redis.port}`;
    a = await startServer({ http: { pusher_cluster: `${url} prefix=t${process.pid}: node=host-a` } });
    b = await startServer({ http: { pusher_cluster: `${url} prefix=t${process.pid}: node=host-b` } });
    await linksUp(a, 1);
    await linksUp(b, 1);
});

after(async () => {
    await a.stop();
    await b.stop();
    await redis.stop();
});

const frame = (ev, ch, data) => JSON.stringify({ event: ev, channel: ch, data: JSON.stringify(data) });

test('the brokers say which node they are and that both links are up', () => {
    const log = fs.readFileSync(a.file('broker.stderr'), 'utf8');
    assert.match(log, new RegExp(`cluster: node host-a, Redis redis://127\\.0\\.0\\.1:${redis.port}, prefix t${process.pid}:`));
    assert.match(log, /cluster: the publishing link to Redis is up/);
    assert.match(log, /cluster: the subscribing link to Redis is up/);
});

test('an event triggered on either host reaches every subscriber on both hosts once, exact bytes', async () => {
    const subs = [];
    for (const srv of [a, b, a, b]) {
        const ws = await connectRaw(srv);
        await subscribeRaw(ws, 'orders');
        subs.push(ws);
    }
    for (const [srv, n] of [[a, 1], [b, 2]]) {
        const r = await sdkTrigger(sdk(srv), 'orders', 'created', { n });
        assert.equal(r.status, 200);
        for (const ws of subs) {
            await ws.expectText(frame('created', 'orders', { n }));
        }
    }
    for (const ws of subs) {
        await ws.expectNothing(300);
        ws.close();
    }
});

test('socket_id exclusion across hosts: the excluded socket on the other host gets nothing, the rest get it', async () => {
    const onA = await connectRaw(a);
    const onB = await connectRaw(b);
    const other = await connectRaw(b);
    for (const ws of [onA, onB, other]) {
        await subscribeRaw(ws, 'excl');
    }
    /* a worker of another host may have the same pid (containers): in a
       cluster the counter starts at a random 48-bit number */
    for (const ws of [onA, onB, other]) {
        const n = Number(ws.socketId.split('.')[1]);
        assert.ok(n >= 2 ** 20 && n < 2 ** 48 + 1e6, `socket_id ${ws.socketId}: a random counter base expected`);
    }
    const r = await sdkTrigger(sdk(a), 'excl', 'e', { x: 1 }, { socket_id: onB.socketId });
    assert.equal(r.status, 200);
    await onA.expectText(frame('e', 'excl', { x: 1 }));
    await other.expectText(frame('e', 'excl', { x: 1 }));
    await onB.expectNothing(300);
    for (const ws of [onA, onB, other]) {
        ws.close();
    }
});

test('500 events triggered on host A arrive complete and in order at pusher-js on host B', { timeout: 60000 }, async () => {
    const c = await pusherJs(b);
    const ch = await pjsSubscribe(c, 'seq');
    const got = [];
    ch.bind('n', (d) => got.push(d.i));
    const api = sdk(a);
    for (let i = 0; i < 500; i += 10) {
        await Promise.all(Array.from({ length: 10 }, (_, k) => i + k)
            .map(async (k) => {
                const r = await sdkTrigger(api, 'seq', 'n', { i: k });
                assert.equal(r.status, 200);
            }));
    }
    await waitUntil(() => got.length >= 500, 5000, () => `got ${got.length} of 500`);
    await sleep(200);
    assert.equal(got.length, 500);
    assert.deepEqual([...got].sort((x, y) => x - y), Array.from({ length: 500 }, (_, i) => i));
    c.disconnect();
});

test('/metrics counts the records each host published and received, and promtool takes it', async () => {
    const ws = await connectRaw(b);
    await subscribeRaw(ws, 'counted');
    const before = { a: await metrics(a), b: await metrics(b) };
    for (let i = 0; i < 3; i++) {
        assert.equal((await sdkTrigger(sdk(a), 'counted', 'e', { i })).status, 200);
        await ws.expectText(frame('e', 'counted', { i }));
    }
    await waitUntil(async () => sample(await metrics(a), 'pusher_cluster_records_published_total')
                    === sample(before.a, 'pusher_cluster_records_published_total') + 3, 3000, 'published + 3 on host A');
    const after = await metrics(b);
    assert.equal(sample(after, 'pusher_cluster_records_received_total'),
                 sample(before.b, 'pusher_cluster_records_received_total') + 3);
    for (const name of ['lost', 'rejected', 'dropped', 'publish_failed']) {
        assert.equal(sample(after, `pusher_cluster_records_${name}_total`), 0, name);
    }
    const check = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: after, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
    ws.close();
});

test('a client event on a private channel reaches the members on the other host, not the sender', async () => {
    const ch = 'private-room';
    const s = [await connectRaw(a), await connectRaw(b), await connectRaw(b)];
    for (const ws of s) {
        const srv = ws === s[0] ? a : b;
        await subscribeRaw(ws, ch, channelAuth(srv.key, srv.secret, ws.socketId, ch));
    }
    s[0].sendText('{"event":"client-typing","channel":"private-room","data":{"id":7}}');
    for (const ws of s.slice(1)) {
        await ws.expectText('{"event":"client-typing","channel":"private-room","data":{"id":7}}');
    }
    await s[0].expectNothing(300);
    for (const ws of s) {
        ws.close();
    }
});

test('Redis down: each host still delivers its own events; the loss on the other host is announced with 4200 within a second of Redis returning; delivery resumes', { timeout: 60000 }, async () => {
    const onA = await connectRaw(a);
    const onB = await connectRaw(b);
    const idleB = await connectRaw(b);
    await subscribeRaw(onA, 'outage');
    await subscribeRaw(onB, 'outage');

    await redis.stop();
    await linksUp(a, 0);
    await linksUp(b, 0);

    /* local delivery goes on; the other host misses it, for now silently */
    const r = await sdkTrigger(sdk(a), 'outage', 'e', { during: true });
    assert.equal(r.status, 200);
    await onA.expectText(frame('e', 'outage', { during: true }));
    await onB.expectNothing(300);
    await waitUntil(async () => sample(await metrics(a), 'pusher_cluster_records_publish_failed_total') >= 1, 3000,
                    'the failed publish is counted');

    const t0 = Date.now();
    await redis.start();
    await linksUp(a, 1);
    await linksUp(b, 1);
    assert.ok(Date.now() - t0 < 5000, `links back after ${Date.now() - t0} ms`);

    /* host A's next heartbeat shows host B the gap: B's subscribed sockets
       reconnect, its unsubscribed one stays, host A's are untouched */
    await onB.expectText(errorFrame(4200, 'Missed events after a pause, reconnect'), { timeout: 3000 * SLOW });
    await onB.expectClose(4200, 'Missed events after a pause, reconnect');
    assert.ok(Date.now() - t0 < 5000, `loss announced ${Date.now() - t0} ms after Redis was back`);
    await idleB.expectNothing(100);
    await onA.expectNothing(100);
    const mb = await metrics(b);
    assert.equal(sample(mb, 'pusher_cluster_records_lost_total'), 1);
    const log = fs.readFileSync(b.file('broker.stderr'), 'utf8');
    assert.match(log, /cluster: 1 record\(s\) of node host-a never arrived \(a Redis link was down\): subscribed sockets are told to reconnect \(4200\)/);
    await waitUntil(() => /1 event record\(s\) of cluster node "host-a" never reached this host/.test(b.errorLog()), 2000,
                    'each worker of host B says why');

    /* delivery across hosts resumes */
    const again = await connectRaw(b);
    await subscribeRaw(again, 'outage');
    const r2 = await sdkTrigger(sdk(a), 'outage', 'e', { after: true });
    assert.equal(r2.status, 200);
    await onA.expectText(frame('e', 'outage', { after: true }));
    await again.expectText(frame('e', 'outage', { after: true }));
    for (const ws of [onA, idleB, again]) {
        ws.close();
    }
});
