'use strict';
// One set of rules for an app's settings (common/pusher_app.h): what
// nginx -t accepts, the broker accepts, and what the broker would refuse
// nginx -t refuses with a clear message.  A HELLO the broker refuses
// anyway (no wake slot left) is logged by the worker at [error] with the
// broker's reason.  The apps reach the broker only from the nginx master:
// nothing that can open the control socket changes them.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');

const { nginxTest, startServer, test, waitUntil, SLOW } = require('./lib/harness');
const { connectRaw, sdk } = require('./lib/clients');


const hooks = (n, extra = '') => Array.from({ length: n }, (_, i) => `http://127.0.0.1:9/h${i}${extra}`);
const headers = (n) => Array.from({ length: n }, (_, i) => `header=X-H${i}:v${i}`).join(' ');

test('nginx -t refuses every value the broker refuses, with the rule it breaks', () => {
    const cases = [
        [{ webhook_vacated_delay: '2h' }, '"webhook_vacated_delay" directive must be at most 1h'],
        [{ max_event_data: '1025m' }, '"max_event_data" directive must be 1 .. 1073741824 (1024m)'],
        [{ max_request_size: '1025m' }, '"max_request_size" directive must be 1 .. 1073741824 (1024m)'],
        [{ max_event_name: '0' }, '"max_event_name" directive must be 1 .. 1073741824 (1024m)'],
        [{ max_event_channels: '1073741825' }, '"max_event_channels" directive must be 1 .. 1073741824 (1024m)'],
        [{ max_batch_events: '0' }, '"max_batch_events" directive must be 1 .. 1073741824 (1024m)'],
        [{ cache_ttl: '40y' }, '"cache_ttl" directive must be at most 1073741824 seconds (34y)'],
        [{ webhook: 'https://u:p@host/x' },
         'invalid webhook URL "https://u:p@host/x": user:password@ is not allowed (use header=Authorization:...)'],
        [{ webhook: 'ftp://host/x' }, 'invalid webhook URL "ftp://host/x": http:// or https:// expected'],
        [{ webhook: 'http://host:70000/' }, 'invalid webhook URL "http://host:70000/": a port out of 1 .. 65535'],
        [{ webhook: 'http://host/x#y' }, 'invalid webhook URL "http://host/x#y": a #fragment is not sent'],
        [{ webhook: 'http://ho%st/' }, 'invalid webhook URL "http://ho%st/": a bad host name'],
        [{ webhook: hooks(17) }, 'more than 16 webhooks in one pusher_app'],
        [{ webhook: `http://h/ ${headers(33)}` }, 'more than 32 "header=" in a webhook'],
        [{ webhook: 'http://h/ "header=X Y:1"' },
         'invalid webhook header "header=X Y:1": "header=Name:Value" with a token as the name expected'],
        [{ webhook: 'http://h/ "header=X:a\x01b"' },
         'invalid webhook header "header=X:a\x01b": a control character, or longer than 1024 bytes'],
        [{ webhook: `http://h/ prefix=${'p'.repeat(1025)}` },
         'pusher app "424242": a webhook prefix= or suffix= longer than 1024 bytes'],
    ];
    const wrong = [];
    for (const [app, want] of cases) {
        const r = nginxTest({ app });
        if (r.status !== 1 || r.emerg !== want) {
            wrong.push(`${JSON.stringify(app).slice(0, 120)}: status ${r.status}, ${JSON.stringify(r.emerg || r.stderr)}`);
        }
    }
    assert.deepEqual(wrong, []);
});

// the largest values nginx -t takes: the broker takes them too, the
// workers attach and an event is delivered
test('the bounds themselves pass nginx -t and the broker: workers attach, events flow', async () => {
    const app = {
        webhook_vacated_delay: '1h',
        max_event_data: '1024m',
        max_request_size: '1024m',
        max_event_channels: '1073741824',
        max_batch_events: '1073741824',
        webhook: [...hooks(15), `HTTPS://[::1]:65535/x?y=1 ${headers(32)} prefix=${'p'.repeat(1024)}`],
    };
    const r = nginxTest({ app });
    assert.equal(r.status, 0, r.stderr);
    const srv = await startServer({ app });
    try {
        const ws = await connectRaw(srv);
        ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'bounds' } });
        await ws.waitEvent('pusher_internal:subscription_succeeded', 'bounds');
        const res = await sdk(srv).trigger('bounds', 'e', { ok: 1 });
        assert.equal(res.status, 200);
        const f = await ws.waitEvent('e', 'bounds');
        assert.equal(f.data, '{"ok":1}');
        assert.doesNotMatch(fs.readFileSync(srv.file('broker.stderr'), 'utf8'), /dropped|bad HELLO/);
        ws.close();
    } finally {
        await srv.stop();
    }
});

/* a client of the control socket that says HELLO as a worker would (or
 * as an old one did, with a table of its own in it) */
function fakeWorker(sockPath, pid, hello = {
    pid, conf_time: 0, apps: [{ id: 'fake', key: 'fake', secret: 'fake' }],
}) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(sockPath);
        hello = Buffer.from(JSON.stringify(hello));
        const head = Buffer.alloc(8);
        head.writeUInt32LE(hello.length, 0);
        head.writeUInt16LE(1, 4);                  /* PUSHER_CTL_HELLO */
        let got = Buffer.alloc(0);
        sock.on('connect', () => sock.write(Buffer.concat([head, hello])));
        sock.on('data', (d) => {
            got = Buffer.concat([got, d]);
            if (got.length >= 8 && got.length >= 8 + got.readUInt32LE(0)) {
                const type = got.readUInt16LE(4);
                const payload = got.subarray(8, 8 + got.readUInt32LE(0)).toString();
                resolve({ sock, type, payload });
            }
        });
        sock.on('error', reject);
        sock.on('close', () => resolve({ sock, type: 0, payload: '' }));
    });
}

test('a HELLO the broker refuses: the worker logs the broker\'s reason at [error], and attaches once it can', { timeout: 60000 * SLOW }, async () => {
    const srv = await startServer({});
    const fakes = [];
    try {
        const control = srv.file('control.sock');
        /* 2 slots are the workers'; the fakes take the other 254 */
        for (let i = 0; i < 254; i++) {
            const f = await fakeWorker(control, 900000 + i);
            assert.equal(f.type, 2, `fake ${i}: WELCOME expected, got type ${f.type} ${f.payload}`);
            fakes.push(f.sock);
        }
        const refused = await fakeWorker(control, 999999);
        assert.deepEqual([refused.type, refused.payload], [6, 'all 256 wake slots are taken']);   /* REFUSED */

        /* a worker dies while the master cannot respawn it; a fake takes its slot */
        const [victim] = srv.workerPids();
        srv.allowLog(new RegExp(`\\[alert\\] .*worker process ${victim} exited on signal 9`));
        process.kill(srv.masterPid, 'SIGSTOP');
        try {
            process.kill(victim, 'SIGKILL');
            await waitUntil(async () => {
                const f = await fakeWorker(control, 999998);
                if (f.type === 2) {
                    fakes.push(f.sock);
                    return true;
                }
                f.sock.destroy();
                return false;
            }, 5000, 'the killed worker\'s slot taken by a fake');
        } finally {
            process.kill(srv.masterPid, 'SIGCONT');
        }
        const logged = /\[error\] \d+#\d+: pusher: the broker refused this worker: all 256 wake slots are taken/;
        await waitUntil(() => logged.test(fs.readFileSync(srv.file('error.log'), 'utf8')), 5000,
                        'the refusal in error.log');
        /* logged once, not at every retry */
        await new Promise((r) => setTimeout(r, 1500));
        const lines = fs.readFileSync(srv.file('error.log'), 'utf8').split('\n').filter((l) => logged.test(l));
        assert.equal(lines.length, 1, lines.join('\n'));

        /* a slot frees: the new worker attaches within its retry interval */
        fakes.pop().destroy();
        const workers = srv.workerPids();
        await waitUntil(() => workers.every((pid) => new RegExp(`nginx worker pid ${pid} attached`)
            .test(fs.readFileSync(srv.file('broker.stderr'), 'utf8'))), 3000, 'both workers attached');
    } finally {
        for (const s of fakes) {
            s.destroy();
        }
        await srv.stop();
    }
});

test('only the nginx master writes the apps: a HELLO with its own table and a newer conf_time, or a table file of another user, change nothing; a reload still applies', { timeout: 60000 * SLOW }, async () => {
    const srv = await startServer({});
    try {
        const control = srv.file('control.sock');
        const table = `${control}.apps`;
        const real = sdk(srv);
        const forged = sdk(srv, { secret: 'forged-secret' });
        const status = (client) => client.get({ path: '/channels' }).then((r) => r.status, (e) => e.status);
        const inForce = async () => assert.deepEqual([await status(real), await status(forged)], [200, 401]);

        /* the master (root, as it loaded nginx.conf) wrote the table for the
         * broker, readable by the workers' group only */
        const st = fs.statSync(table);
        assert.deepEqual([st.uid, (st.mode & 0o777).toString(8)], [0, '640']);
        const written = JSON.parse(fs.readFileSync(table, 'utf8'));
        assert.equal(written.pid, srv.masterPid);
        assert.deepEqual(written.apps.map((a) => [a.id, a.key, a.secret]), [[srv.appId, srv.key, srv.secret]]);
        await inForce();

        /* a process that can open the control socket says HELLO with its own
         * secret, webhook and a conf_time from the future: it is attached,
         * as a worker of another configuration, and the table stays */
        const attacker = await fakeWorker(control, 4242, {
            pid: 4242, conf_time: Date.now() + 86400000,
            apps: [{ id: srv.appId, key: srv.key, secret: 'forged-secret', webhooks: [{ url: 'http://127.0.0.1:9/steal' }] }],
        });
        assert.equal(attacker.type, 2, `WELCOME expected, got ${attacker.type} ${attacker.payload}`);
        attacker.sock.destroy();
        await inForce();

        /* a table file put there by another user (the workers' user, where
         * it may write the directory) is refused with the reason */
        const tmp = `${table}.forged`;
        fs.writeFileSync(tmp, JSON.stringify({
            pid: 1, conf_time: 77, apps: [{ id: srv.appId, key: srv.key, secret: 'forged-secret' }],
        }), { mode: 0o600 });
        fs.chownSync(tmp, 65534, 65534);
        fs.renameSync(tmp, table);
        const refused = await fakeWorker(control, 4243, { pid: 4243, conf_time: 77 });
        assert.deepEqual([refused.type, refused.payload],
                         [6, `no app table from the nginx master: ${table}: owned by uid 65534, not by the nginx master's user (uid 0, --config-owner)`]);
        refused.sock.destroy();
        await inForce();

        /* a reload: the master writes the table again, its workers name it */
        const { fresh } = await srv.reload();
        assert.equal(fs.statSync(table).uid, 0);
        const log = () => fs.readFileSync(srv.file('broker.stderr'), 'utf8');
        await waitUntil(() => fresh.every((pid) => new RegExp(`nginx worker pid ${pid} attached`).test(log())),
                        5000 * SLOW, 'the new workers attached');
        await inForce();
        const ws = await connectRaw(srv);
        ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'after-reload' } });
        await ws.waitEvent('pusher_internal:subscription_succeeded', 'after-reload');
        assert.equal((await real.trigger('after-reload', 'e', {})).status, 200);
        await ws.waitEvent('e', 'after-reload');
        ws.close();
        assert.match(log(), /nginx worker pid 4242 serves conf_time \d+, the master's table is of conf_time \d+/);
    } finally {
        await srv.stop();
    }
});

/* resolves the ms until the peer closed the socket, Infinity after 10 s */
function closedAfter(sock, since) {
    return new Promise((resolve) => {
        const t = setTimeout(() => resolve(Infinity), 10000 * SLOW);
        sock.on('error', () => {});
        sock.on('close', () => {
            clearTimeout(t);
            resolve(Date.now() - since);
        });
    });
}

test('the control socket: a connection without HELLO is closed after 3 s; at most 512 are open, the workers keep theirs', { timeout: 60000 * SLOW }, async () => {
    const srv = await startServer({});
    const socks = [];
    try {
        const control = srv.file('control.sock');
        const t0 = Date.now();
        const closes = [];
        for (let i = 0; i < 600; i++) {
            const s = net.connect(control);
            socks.push(s);
            closes.push(closedAfter(s, t0));
            await new Promise((r) => { s.once('connect', r); s.once('error', r); });
        }
        const ms = await Promise.all(closes);
        /* 512 = 2 x 256 wake slots; the two workers hold 2 of them */
        const early = ms.filter((t) => t < 2000).length;
        const timedOut = ms.filter((t) => t >= 2500 && t < 3000 + 2000 * SLOW).length;
        assert.deepEqual({ early, timedOut }, { early: 90, timedOut: 510 });
        const log = fs.readFileSync(srv.file('broker.stderr'), 'utf8');
        assert.match(log, /control socket: 64 connection\(s\) refused, 512 are open/);
        assert.match(log, /control socket: 256 connection\(s\) closed without a HELLO within 3 s/);

        /* the workers were never dropped: an event still arrives */
        assert.doesNotMatch(log, /nginx worker pid \d+ (detached|dropped)/);
        const ws = await connectRaw(srv);
        ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'after-flood' } });
        await ws.waitEvent('pusher_internal:subscription_succeeded', 'after-flood');
        assert.equal((await sdk(srv).trigger('after-flood', 'e', {})).status, 200);
        await ws.waitEvent('e', 'after-flood');
        ws.close();
    } finally {
        for (const s of socks) {
            s.destroy();
        }
        await srv.stop();
    }
});
