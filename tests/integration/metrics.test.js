'use strict';
// pusher_metrics: the Prometheus text format of both workers and the
// broker at /metrics, exact counts after known traffic on both workers,
// promtool's check, the allow list, and a real Prometheus (Debian's
// /usr/bin/prometheus on a loopback port) scraping it and answering a
// query with the value the test predicts.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { before, after } = require('node:test');

const {
    startServer, test, waitUntil, socketWorker, freePort, httpRequest, TLS_CERT,
} = require('./lib/harness');
const {
    connectRaw, connectRawAcrossWorkers, subscribeRaw, establishedFrame, succeededFrame, eventFrame, sdk, sdkTrigger, pusherJs,
    pjsSubscribe, signedRequest, channelAuth,
} = require('./lib/clients');

const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';

let srv;
let api;

/* an app whose webhook endpoint refuses connections; its URL has a token */
const HOOK_APP = { id: '7001', key: 'hook-app-key', secret: 'hook-app-secret' };
let hookUrl;

before(async () => {
    hookUrl = `http://127.0.0.1:${await freePort()}/hook?token=hook-url-token`;
    srv = await startServer({
        extraApps: [{ ...HOOK_APP, app: { webhook: `${hookUrl} events=channel_occupied` } }],
    });
    api = sdk(srv);
});

after(async () => {
    await srv.stop();
});

async function scrape() {
    const r = await httpRequest(srv.port, 'GET', '/metrics', { tls: srv.tls });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    return r.body;
}

/* the samples of a page: 'name{labels}' -> number */
function samples(text) {
    const m = new Map();
    for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('#')) {
            continue;
        }
        const sp = line.lastIndexOf(' ');
        m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
    return m;
}

function value(m, key) {
    assert.ok(m.has(key), `no sample ${key}`);
    return m.get(key);
}

/* the difference of each sample between two pages, where it changed */
function changes(a, b) {
    const out = {};
    for (const [k, v] of b) {
        if ((a.get(k) || 0) !== v) {
            out[k] = v - (a.get(k) || 0);
        }
    }
    return out;
}

function promtool(text) {
    return childProcess.spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
}

const A = (name, extra = '') => `${name}{app_id="${srv.appId}"${extra}}`;

/* server frame bytes: 2-byte header below 126 bytes of payload, else 4 */
const frameBytes = (text) => Buffer.byteLength(text) + (Buffer.byteLength(text) < 126 ? 2 : 4);
/* client frame bytes: masked */
const clientFrameBytes = (text) => frameBytes(text) + 4;

test('/metrics: both workers attached, the broker part, valid for promtool, no secret', async () => {
    const pids = srv.workerPids();
    let text;
    await waitUntil(async () => {
        text = await scrape();
        const m = samples(text);
        return pids.every((p) => m.get(`pusher_worker_broker_attached{pid="${p}"}`) === 1)
            && m.get('pusher_broker_workers_attached') === 2;
    }, 5000, () => `both workers attached:\n${text}`);
    const m = samples(text);
    assert.equal(value(m, 'pusher_broker_up'), 1);
    assert.equal(value(m, A('pusher_connected')), 0);
    assert.equal(value(m, A('pusher_channels')), 0);
    for (const p of pids) {
        assert.equal(value(m, `pusher_ring_lag_bytes{pid="${p}"}`), 0);
        assert.equal(value(m, `pusher_ring_laps_total{pid="${p}"}`), 0);
    }
    assert.ok(!text.includes(srv.secret), 'the app secret is not in the metrics');
    assert.ok(!text.includes(srv.key), 'the app key is not in the metrics');
    const r = promtool(text);
    assert.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}\n${text}`);
});

test('raw sockets on both workers: exact connections, messages, bytes, subscriptions, events, close codes', async () => {
    const before0 = samples(await scrape());
    const socks = await connectRawAcrossWorkers(srv, 4);
    const n = socks.length;
    assert.deepEqual([...new Set(socks.map((s) => s.worker))].sort(), srv.workerPids());

    const sub = JSON.stringify({ event: 'pusher:subscribe', data: { auth: '', channel: 'metrics-a' } });
    for (const ws of socks) {
        await subscribeRaw(ws, 'metrics-a');
    }
    const r = await sdkTrigger(api, 'metrics-a', 'ev', { x: 1 });
    assert.equal(r.status, 200);
    const ev = eventFrame('ev', 'metrics-a', { x: 1 });
    for (const ws of socks) {
        await ws.expectText(ev);
    }
    let m;
    const expectedSent = n * 3;
    await waitUntil(async () => {
        m = samples(await scrape());
        return m.get(A('pusher_ws_messages_sent_total')) - (before0.get(A('pusher_ws_messages_sent_total')) || 0) === expectedSent;
    }, 3000, () => `sent: ${JSON.stringify(changes(before0, m))}`);

    const d = changes(before0, m);
    const establishedBytes = socks.reduce((sum, s) => sum + frameBytes(establishedFrame(s.socketId, 30)), 0);
    assert.equal(d[A('pusher_connected')], n);
    assert.equal(d[A('pusher_new_connections_total')], n);
    assert.equal(d[A('pusher_subscriptions')], n);
    assert.equal(d[A('pusher_channels')], 1);
    assert.equal(d[A('pusher_ws_messages_received_total')], n);
    assert.equal(d[A('pusher_socket_received_bytes')], n * clientFrameBytes(sub));
    assert.equal(d[A('pusher_ws_messages_sent_total')], n * 3);
    assert.equal(d[A('pusher_socket_transmitted_bytes')],
        establishedBytes + n * (frameBytes(succeededFrame('metrics-a')) + frameBytes(ev)));
    assert.equal(d[A('pusher_http_requests_total', ',endpoint="events",status="200"')], 1);
    assert.equal(d[A('pusher_http_calls_received_total')], 1);
    assert.equal(d['pusher_ring_records_total'], 1);

    /* a client-initiated close 1000 and a lost TCP connection (1006) */
    socks[0].sendClose(1000, '');
    await socks[0].expectClose(1000);
    for (const ws of socks.slice(1)) {
        ws.close();
    }
    let m2;
    await waitUntil(async () => {
        m2 = samples(await scrape());
        return m2.get(A('pusher_connected')) === before0.get(A('pusher_connected'));
    }, 3000, () => `closed: ${JSON.stringify(changes(before0, m2))}`);
    const d2 = changes(m, m2);
    assert.equal(d2[A('pusher_new_disconnections_total')], n);
    assert.equal(d2[A('pusher_close_codes_total', ',code="1000"')], 1);
    assert.equal(d2[A('pusher_close_codes_total', ',code="1006"')], n - 1);
    assert.equal(d2[A('pusher_subscriptions')], -n);
    assert.equal(d2[A('pusher_channels')], -1);
});

test('HTTP API by endpoint and status; a bad signature is a signature failure', async () => {
    const m0 = samples(await scrape());
    const bad = await signedRequest(srv, 'POST', `/apps/${srv.appId}/events`, {
        body: JSON.stringify({ name: 'e', channel: 'c', data: '{}' }),
        secret: 'wrong-secret',
    });
    assert.equal(bad.status, 401);
    const ok = await signedRequest(srv, 'GET', `/apps/${srv.appId}/channels`);
    assert.equal(ok.status, 200);
    const m1 = samples(await scrape());
    const d = changes(m0, m1);
    assert.equal(d[A('pusher_signature_failures_total')], 1);
    assert.equal(d[A('pusher_http_requests_total', ',endpoint="events",status="401"')], 1);
    assert.equal(d[A('pusher_http_requests_total', ',endpoint="channels",status="200"')], 1);
    assert.equal(d[A('pusher_http_calls_received_total')], 2);
});

test('client events and the client event rate limit are counted', async () => {
    const m0 = samples(await scrape());
    const socks = await connectRawAcrossWorkers(srv, 2);
    const a = socks.find((s) => s.worker === socks[0].worker);
    const b = socks.find((s) => s.worker !== socks[0].worker);
    for (const ws of [a, b]) {
        ws.sendJson({ event: 'pusher:subscribe', data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, 'private-m'), channel: 'private-m' } });
        await ws.expectText(succeededFrame('private-m'));
    }
    const rate = 10; /* client_event_rate default */
    for (let i = 0; i < rate + 2; i++) {
        a.sendJson({ event: 'client-x', channel: 'private-m', data: { i } });
    }
    let m1;
    await waitUntil(async () => {
        m1 = samples(await scrape());
        return m1.get(A('pusher_client_event_rate_limited_total')) - (m0.get(A('pusher_client_event_rate_limited_total')) || 0) === 2;
    }, 3000, () => JSON.stringify(changes(m0, m1)));
    const d = changes(m0, m1);
    assert.equal(d[A('pusher_client_events_total')], rate);
    for (const ws of socks) {
        ws.close();
    }
});

test('the allow list: another address gets 403', async () => {
    const r = await new Promise((resolve, reject) => {
        const req = (srv.tls ? https : http).request({
            host: '127.0.0.1', port: srv.port, path: '/metrics', localAddress: '127.0.0.2', agent: false,
            rejectUnauthorized: false, servername: '',
        }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
        });
        req.on('error', reject);
        req.end();
    });
    assert.equal(r, 403);
});

test('webhooks are counted per app, never by URL: a refusing endpoint shows requests and retries', async () => {
    const ws = await connectRaw(srv, { key: HOOK_APP.key });
    await subscribeRaw(ws, 'hooked');
    const H = (name, extra = '') => `${name}{app_id="${HOOK_APP.id}"${extra}}`;
    let text;
    let m;
    await waitUntil(async () => {
        text = await scrape();
        m = samples(text);
        return m.get(H('pusher_webhook_retries_total')) >= 1;
    }, 5000, () => text);
    const inFlight = value(m, H('pusher_webhook_requests_total')) - value(m, H('pusher_webhook_retries_total'));
    assert.ok(inFlight === 0 || inFlight === 1, text);
    assert.equal(value(m, H('pusher_webhook_events_sent_total')), 0);
    assert.equal(value(m, H('pusher_webhook_events_dropped_total', ',reason="failed"')), 0);
    assert.equal(value(m, H('pusher_connected')), 1);
    assert.equal(value(m, H('pusher_channels')), 1);
    for (const secret of [hookUrl, 'hook-url-token', HOOK_APP.key, HOOK_APP.secret]) {
        assert.ok(!text.includes(secret), `${secret} is in the metrics`);
    }
    const r = promtool(text);
    assert.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}\n${text}`);
    ws.close();
});

test('a SIGKILLed worker: the respawned one takes its sockets and subscriptions out of the gauges, its pid leaves the page', async () => {
    const socks = await connectRawAcrossWorkers(srv, 4);
    for (const ws of socks) {
        await subscribeRaw(ws, 'crash-ch');
    }
    const victim = socks[0].worker;
    const survivors = socks.filter((ws) => ws.worker !== victim);
    const m0 = samples(await scrape());
    assert.equal(value(m0, A('pusher_connected')), socks.length);
    assert.equal(value(m0, A('pusher_subscriptions')), socks.length);

    const pids = await srv.killWorker(victim);
    const fresh = pids.find((p) => p !== survivors[0].worker);
    let m1;
    await waitUntil(async () => {
        m1 = samples(await scrape());
        return m1.get(A('pusher_connected')) === survivors.length
            && m1.get(`pusher_worker_broker_attached{pid="${fresh}"}`) === 1;
    }, 5000, () => JSON.stringify(changes(m0, m1)));
    assert.equal(value(m1, A('pusher_subscriptions')), survivors.length);
    assert.equal(value(m1, A('pusher_channels')), 1);
    assert.ok(![...m1.keys()].some((k) => k.includes(`pid="${victim}"`)), `pid ${victim} still on the page`);
    assert.equal(value(m1, 'pusher_broker_workers_attached'), 2);
    for (const ws of socks) {
        ws.close();
    }
});

test('a broker that does not answer within 1 s, then none: the workers\' part with pusher_broker_up 0; attached again after a restart', async () => {
    const pids = srv.workerPids();
    const m0 = samples(await scrape());

    /* stopped: the request waits 1 s for it, then goes without */
    process.kill(srv.broker.pid, 'SIGSTOP');
    let t0 = Date.now();
    let m;
    try {
        m = samples(await scrape());
    } finally {
        process.kill(srv.broker.pid, 'SIGCONT');
    }
    const waited = Date.now() - t0;
    assert.ok(waited >= 900, `answered after ${waited} ms`);
    assert.equal(value(m, 'pusher_broker_up'), 0);
    assert.ok(!m.has('pusher_broker_workers_attached'), 'no broker part');
    assert.equal(value(m, A('pusher_connected')), 0);
    /* the late answer is dropped; the next page has the broker again */
    assert.equal(value(samples(await scrape()), 'pusher_broker_up'), 1);

    await srv.stopBroker();
    let text;
    await waitUntil(async () => {
        text = await scrape();
        const m1 = samples(text);
        return pids.every((p) => m1.get(`pusher_worker_broker_attached{pid="${p}"}`) === 0);
    }, 3000, () => `detached:\n${text}`);
    t0 = Date.now();
    const m1 = samples(await scrape());
    assert.ok(Date.now() - t0 < 900, 'no broker: answered at once');
    assert.equal(value(m1, 'pusher_broker_up'), 0);
    const r = promtool(text);
    assert.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}\n${text}`);

    await srv.startBroker();
    let m2;
    await waitUntil(async () => {
        m2 = samples(await scrape());
        /* the broker counts a worker at its HELLO, the worker itself at the
         * WELCOME that follows: wait for both views */
        return m2.get('pusher_broker_up') === 1 && m2.get('pusher_broker_workers_attached') === 2
            && pids.every((p) => m2.get(`pusher_worker_broker_attached{pid="${p}"}`) === 1);
    }, 5000, () => JSON.stringify(changes(m0, m2)));
    for (const p of pids) {
        assert.equal(value(m2, `pusher_worker_broker_attached{pid="${p}"}`), 1);
        assert.equal(value(m2, `pusher_worker_broker_attaches_total{pid="${p}"}`)
            - value(m0, `pusher_worker_broker_attaches_total{pid="${p}"}`), 1);
    }
});

test('a real Prometheus scrapes /metrics and answers sum(pusher_connected) with the connected pusher-js clients', { timeout: 60000 }, async () => {
    assert.ok(fs.existsSync(PROMETHEUS), `${PROMETHEUS} missing: apt-get install prometheus`);
    let left;
    await waitUntil(async () => {
        left = [...samples(await scrape())].filter(([k]) => k.startsWith('pusher_connected{'))
            .reduce((sum, [, v]) => sum + v, 0);
        return left === 0;
    }, 3000, () => `sockets of earlier tests still open: ${left}`);
    const clients = [];
    for (let i = 0; i < 6 || new Set(clients.map((c) => socketWorker(c.connection.socket_id))).size < 2; i++) {
        assert.ok(i < 40, 'pusher-js clients all landed on one worker');
        clients.push(await pusherJs(srv));
    }
    for (const c of clients) {
        await pjsSubscribe(c, 'prom-channel');
    }
    const n = clients.length;

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pusher-prometheus-'));
    const port = await freePort();
    const tlsConfig = srv.tls ? `\n    scheme: https\n    tls_config:\n      ca_file: ${TLS_CERT}` : '';
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pusher
    metrics_path: /metrics${tlsConfig}
    static_configs:
      - targets: ['127.0.0.1:${srv.port}']
`);
    const log = fs.openSync(path.join(dir, 'prometheus.log'), 'w');
    const prom = childProcess.spawn(PROMETHEUS, [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
    ], { stdio: ['ignore', log, log] });
    const query = (q) => new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: `/api/v1/query?query=${encodeURIComponent(q)}`, agent: false }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                try {
                    resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
                } catch (e) {
                    reject(e);
                }
            });
        }).on('error', () => resolve(null));
    });
    try {
        let last;
        await waitUntil(async () => {
            last = await query('sum(pusher_connected)');
            if (last && last.status === 'success' && last.data.result.length === 1) {
                last.targets = await query('up');
            }
            return last && last.status === 'success' && last.data.result.length === 1
                && Number(last.data.result[0].value[1]) === n;
        }, 20000, () => `Prometheus: ${JSON.stringify(last)}\n${fs.readFileSync(path.join(dir, 'prometheus.log'), 'utf8').slice(-3000)}`, 250);
        const up = await query('up{job="pusher"}');
        assert.equal(up.data.result[0].value[1], '1');
        const subs = await query(`pusher_subscriptions{app_id="${srv.appId}"}`);
        assert.equal(Number(subs.data.result[0].value[1]), n);
        const attached = await query('sum(pusher_worker_broker_attached)');
        assert.equal(Number(attached.data.result[0].value[1]), 2);
    } finally {
        prom.kill('SIGTERM');
        await new Promise((resolve) => {
            if (prom.exitCode !== null) {
                resolve();
            } else {
                prom.on('exit', resolve);
            }
        });
        fs.closeSync(log);
        fs.rmSync(dir, { recursive: true, force: true });
        for (const c of clients) {
            c.disconnect();
        }
    }
});
