'use strict';
// The README's front door with a user's config: `NGINX_CONF=... scripts/run`
// runs a complete nginx.conf as it is, learns the broker's sockets, the
// listener and the apps from nginx's own view of it (`nginx -T`), checks
// readiness through nginx at the address users reach and prints one
// "listens on" line and the Laravel .env lines of every app:
//
//   - conf.examples/nginx-two-apps.conf (plain): the two apps work side by
//     side and apart: origins, the same channel name, their secrets;
//   - conf.examples/nginx-tls.conf: a TLS-only listener with the generated
//     certificate, no "location = /up", a port-80 redirect server and a
//     php-fpm location: wss:// and https:// and REVERB_SCHEME=https;
//   - a layout line regexes misread: pusher_broker on the line of "http {",
//     a one-line upstream, apps in included files;
//   - the rendered default config (the Quick start) with the broker killed
//     with SIGKILL: scripts/run restarts it, nginx keeps its WebSockets;
//     it serves pusher_metrics at /metrics.
//   - PUSHER_DEBUG=1: the rendered config with pusher_debug on and the
//     debug lines in scripts/run's output; a user's config without it is
//     refused.
//
// Each config is moved only where it cannot run here (ports, certificate,
// pid, log and socket paths).  The plain tests speak plain http whatever
// PUSHER_TLS says; the TLS test speaks TLS in both suites.

const assert = require('node:assert/strict');
const { after } = require('node:test');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const {
    test, httpRequest, freePort, waitUntil, SANITIZE, BUILD, TLS_CERT, TLS_KEY,
} = require('./lib/harness');
const { RawWs } = require('./lib/rawws');
const { signedPath } = require('./lib/sign');
const { eventFrame, errorFrame, succeededFrame } = require('./lib/clients');

const REPO = path.resolve(__dirname, '../..');
const EXAMPLES = path.join(REPO, 'conf.examples');

const SKIP_SANITIZE = SANITIZE && 'scripts/run starts nginx without the sanitizer runtime';

/* promise's value, or null after ms (without keeping node up that long) */
function within(promise, ms) {
    let timer;
    const timeout = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/* every scripts/run started here, and the sockets opened to it */
const runs = [];
const open = [];

/* a failed test still stops nginx and the broker: scripts/run does it on SIGTERM */
after(async () => {
    for (const ws of open) {
        ws.destroy();
    }
    for (const r of runs) {
        if (r.proc.exitCode === null && r.proc.signalCode === null) {
            r.proc.kill('SIGTERM');
            if (await within(r.exited, 20000) === null) {
                r.proc.kill('SIGKILL');
                for (const f of ['nginx.pid', 'rt/nginx.pid', 'rt/broker.pid']) {
                    try {
                        process.kill(Number(fs.readFileSync(path.join(r.dir, f), 'utf8')), 'SIGKILL');
                    } catch {
                        /* not running */
                    }
                }
            }
        }
        fs.rmSync(r.dir, { recursive: true, force: true });
    }
});

/* a temporary directory the workers (www-data) can traverse */
function tempDir() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pusher-run-'));
    fs.chmodSync(dir, 0o755);
    return dir;
}

/* text with each [from, to] replaced; every `from` must be in it */
function edit(text, pairs) {
    for (const [from, to] of pairs) {
        assert.ok(text.includes(from), `the example has "${from}"`);
        text = text.replaceAll(from, to);
    }
    return text;
}

/*
 * NGINX_CONF=dir/nginx.conf scripts/run, with REVERB_* only as given in env
 * (the others unset: they come from the config)
 */
function startRun(dir, env = {}) {
    const base = { ...process.env };
    for (const k of Object.keys(base)) {
        if (k.startsWith('REVERB_')) {
            delete base[k];
        }
    }
    const proc = spawn(path.join(REPO, 'scripts/run'), [], {
        env: {
            ...base,
            NGINX_CONF: path.join(dir, 'nginx.conf'),
            PUSHER_NO_BUILD: '1',
            PUSHER_BUILD_DIR: BUILD,
            PUSHER_RUNTIME_DIR: path.join(dir, 'rt'),
            PUSHER_SHM: `/ngx-pusher-test-run-${process.pid}-${runs.length}`,
            ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r = { proc, dir, stdout: '', stderr: '', shm: `/dev/shm/ngx-pusher-test-run-${process.pid}-${runs.length}` };
    proc.stdout.on('data', (d) => {
        r.stdout += d;
    });
    proc.stderr.on('data', (d) => {
        r.stderr += d;
    });
    r.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    r.said = () => `scripts/run said:\n${r.stdout}${r.stderr}`;
    runs.push(r);
    return r;
}

/* until scripts/run printed "ready" (it checks for up to 30 s itself) */
async function waitReady(r) {
    await waitUntil(() => {
        assert.equal(r.proc.exitCode, null, `scripts/run exited: ${r.said()}`);
        return r.stdout.endsWith('ready\n');
    }, 40000, () => `no "ready"; ${r.said()}`, 50);
}

/* the lines scripts/run prints for the apps of a config, then "ready" */
function expectedLines({ scheme, host, port, apps }) {
    const ws = scheme === 'https' ? 'wss' : 'ws';
    const lines = apps.map((a) => `ngx-pusher listens on ${ws}://${host}:${port}/app/${a.key} and ${scheme}://${host}:${port}/apps/${a.id}`);
    for (const a of apps) {
        lines.push(
            `Laravel .env for app ${a.id}:`,
            'BROADCAST_CONNECTION=reverb',
            `REVERB_APP_ID=${a.id}`,
            `REVERB_APP_KEY=${a.key}`,
            `REVERB_APP_SECRET=${a.envSecret || a.secret}`,
            `REVERB_HOST=${host}`,
            `REVERB_PORT=${port}`,
            `REVERB_SCHEME=${scheme}`,
            'VITE_REVERB_APP_KEY="${REVERB_APP_KEY}"',
            'VITE_REVERB_HOST="${REVERB_HOST}"',
            'VITE_REVERB_PORT="${REVERB_PORT}"',
            'VITE_REVERB_SCHEME="${REVERB_SCHEME}"',
        );
    }
    lines.push('ready');
    return lines;
}

/* a secret is printed in its .env line only, never in a log line */
function assertSecretsOnlyInEnv(r, apps) {
    for (const a of apps) {
        const secret = a.envSecret || a.secret;
        assert.deepEqual(r.stdout.split('\n').filter((l) => l.includes(a.secret)), [`REVERB_APP_SECRET=${secret}`], r.said());
        assert.ok(!r.stderr.includes(a.secret), `the secret of app ${a.id} is in a log line: ${r.said()}`);
    }
}

/*
 * Ctrl-C: exit 0, open sockets get 4200, nothing left behind; no
 * [alert]/[emerg]/[crit] but for lines that match `allowed`
 */
async function stopRun(r, sockets, leftovers = [], allowed = null) {
    r.proc.kill('SIGINT');
    const exit = await within(r.exited, 20000);
    assert.deepEqual(exit, { code: 0, signal: null }, `scripts/run exit; ${r.said()}`);
    const bad = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /\[(alert|emerg|crit)\]/.test(l) && !(allowed && allowed.test(l)));
    assert.deepEqual(bad, [], r.said());
    for (const ws of sockets) {
        await ws.expectText(errorFrame(4200, 'Server is shutting down'));
        await ws.expectClose(4200);
    }
    for (const f of [...leftovers, r.shm, path.join(r.dir, 'rt')]) {
        assert.ok(!fs.existsSync(f), `${f} is left behind; ${r.said()}`);
    }
}

function trigger(port, app, channel, name, data, { secret = app.secret, tls = false } = {}) {
    const body = JSON.stringify({ name, channels: [channel], data: JSON.stringify(data) });
    const p = signedPath({ method: 'POST', path: `/apps/${app.id}/events`, body, key: app.key, secret: app.secret, signSecret: secret });
    return httpRequest(port, 'POST', p, { body, tls });
}

async function connect(port, key, { headers, tls = false } = {}) {
    const ws = await RawWs.connect(port, `/app/${key}?protocol=7&client=js&version=8.4.0`, { headers, tls });
    open.push(ws);
    return ws;
}

/* the broker's answer to the unsigned request scripts/run checks readiness with */
const UNSIGNED_401 = '{"error":"Missing auth_key, auth_timestamp, auth_version or auth_signature","code":401}';

test('NGINX_CONF=conf.examples/nginx-two-apps.conf scripts/run: both apps serve, apart; Ctrl-C stops cleanly', {
    skip: SKIP_SANITIZE,
    timeout: 90000,
}, async () => {
    const SHOP = { id: '1001', key: 'shop-key', secret: 'shop-secret' };
    const BACKOFFICE = { id: '1002', key: 'backoffice-key', secret: 'backoffice-secret' };
    const port = await freePort();
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'nginx.conf'), edit(fs.readFileSync(path.join(EXAMPLES, 'nginx-two-apps.conf'), 'utf8'), [
        ['listen 8080;', `listen 127.0.0.1:${port};`],
        ['pid /run/ngx-pusher-two-apps.pid;', `pid ${dir}/nginx.pid;`],
        ['/run/ngx-pusher/', `${dir}/sockets/`],
    ]));

    const r = startRun(dir, { REVERB_HOST: '127.0.0.1', REVERB_PORT: String(port) });
    await waitReady(r);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), expectedLines({ scheme: 'http', host: '127.0.0.1', port, apps: [SHOP, BACKOFFICE] }), r.said());
    assertSecretsOnlyInEnv(r, [SHOP, BACKOFFICE]);
    assert.equal((await httpRequest(port, 'GET', '/up', { tls: false })).body, '{"health":"OK"}');

    /* the shop admits browsers of its own domains only */
    const shop = await connect(port, SHOP.key, { headers: { Origin: 'https://www.shop.example.com' } });
    assert.equal((await shop.nextEvent()).event, 'pusher:connection_established');
    const foreign = await connect(port, SHOP.key, { headers: { Origin: 'https://evil.example.org' } });
    await foreign.expectText(errorFrame(4009, 'Origin not allowed'));
    await foreign.expectClose(4009);

    /* the back office admits any origin; same channel name, other app */
    const office = await connect(port, BACKOFFICE.key);
    assert.equal((await office.nextEvent()).event, 'pusher:connection_established');
    for (const ws of [shop, office]) {
        ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'orders' } });
        await ws.expectText(succeededFrame('orders'));
    }
    /* subscription_count is on for the back office only */
    await office.expectText(JSON.stringify({
        event: 'pusher_internal:subscription_count', channel: 'orders', data: JSON.stringify({ subscription_count: 1 }),
    }), { timeout: 3000 });

    /* ready means the broker knows the apps: the first trigger is accepted */
    assert.equal((await trigger(port, SHOP, 'orders', 'placed', { n: 1 })).status, 200);
    await shop.expectText(eventFrame('placed', 'orders', { n: 1 }));
    assert.equal((await trigger(port, BACKOFFICE, 'orders', 'shipped', { n: 2 })).status, 200);
    await office.expectText(eventFrame('shipped', 'orders', { n: 2 }));
    await shop.expectNothing(200);
    await office.expectNothing(50);

    /* each app's API signs with its own secret only */
    assert.equal((await trigger(port, BACKOFFICE, 'orders', 'x', {}, { secret: SHOP.secret })).status, 401);
    /* the back office has client events off */
    office.sendJson({ event: 'client-typing', channel: 'orders', data: {} });
    const e = await office.nextEvent();
    assert.equal(e.event, 'pusher:error', e.raw);

    await stopRun(r, [shop], [path.join(dir, 'sockets')]);
});

test('NGINX_CONF=conf.examples/nginx-tls.conf scripts/run: TLS-only listener, ready over https, wss:// and REVERB_SCHEME=https; Ctrl-C stops cleanly', {
    skip: SKIP_SANITIZE || (!(TLS_CERT && TLS_KEY) && 'needs PUSHER_TLS_CERT and PUSHER_TLS_KEY (tests/integration/run makes them)'),
    timeout: 90000,
}, async () => {
    const APP = { id: '1001', key: 'ngx-pusher-key', secret: 'ngx-pusher-secret' };
    const port = await freePort();
    const redirectPort = await freePort();
    const dir = tempDir();
    /* the php location's include snippets/fastcgi-php.conf (and its
       fastcgi.conf) resolve next to the config, as in /etc/nginx */
    for (const f of fs.readdirSync('/etc/nginx')) {
        if (f !== 'nginx.conf') {
            fs.symlinkSync(path.join('/etc/nginx', f), path.join(dir, f));
        }
    }
    fs.writeFileSync(path.join(dir, 'nginx.conf'), edit(fs.readFileSync(path.join(EXAMPLES, 'nginx-tls.conf'), 'utf8'), [
        ['pid /run/nginx.pid;', `pid ${dir}/nginx.pid;`],
        ['error_log /var/log/nginx/error.log;', `error_log ${dir}/error.log;`],
        ['access_log /var/log/nginx/access.log;', `access_log ${dir}/access.log;`],
        ['load_module /usr/lib/nginx/modules/ngx_http_pusher_module.so;', `load_module ${BUILD}/ngx_http_pusher_module.so;`],
        /* may be above this machine's hard limit (an [alert] per worker) */
        ['worker_rlimit_nofile 65535;', ''],
        ['/run/ngx-pusher/', `${dir}/sockets/`],
        /* the redirect server on a free port, the site on another; no IPv6 */
        ['listen 80;', `listen 127.0.0.1:${redirectPort};`],
        ['listen [::]:80;', ''],
        ['listen 443 ssl http2;', `listen 127.0.0.1:${port} ssl http2;`],
        ['listen [::]:443 ssl http2;', ''],
        ['/etc/letsencrypt/live/example.com/fullchain.pem', TLS_CERT],
        ['/etc/letsencrypt/live/example.com/privkey.pem', TLS_KEY],
    ]));

    /* no REVERB_*: address, port and scheme come from the config's listener */
    const r = startRun(dir);
    await waitReady(r);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), expectedLines({ scheme: 'https', host: '127.0.0.1', port, apps: [APP] }), r.said());
    assertSecretsOnlyInEnv(r, [APP]);
    assert.match(r.stderr, /pusher-broker runs as www-data:www-data/, r.said());

    /* the broker listens where the config says */
    for (const s of ['control.sock', 'api.sock']) {
        assert.ok(fs.statSync(path.join(dir, 'sockets', s)).isSocket(), `${s}; ${r.said()}`);
    }
    /* the request scripts/run checks readiness with, over https */
    const unsigned = await httpRequest(port, 'GET', '/apps/1001/channels', { tls: true });
    assert.equal(unsigned.status, 401);
    assert.equal(unsigned.body, UNSIGNED_401);
    /* the site's plain port only redirects */
    const plain = await httpRequest(redirectPort, 'GET', '/app/x', { tls: false, headers: { Host: 'example.com' } });
    assert.equal(plain.status, 301);
    assert.equal(plain.headers.location, 'https://example.com/app/x');

    /* a wss:// socket receives an event triggered over https */
    const ws = await connect(port, APP.key, { tls: true });
    const established = await ws.nextEvent();
    assert.equal(established.event, 'pusher:connection_established', established.raw);
    ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'orders' } });
    await ws.expectText(succeededFrame('orders'));
    const res = await trigger(port, APP, 'orders', 'App\\Events\\OrderShipped', { orderId: 7 }, { tls: true });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, '{}');
    await ws.expectText(eventFrame('App\\Events\\OrderShipped', 'orders', { orderId: 7 }));
    await ws.expectNothing(100);

    await stopRun(r, [ws], [path.join(dir, 'sockets')]);
    assert.doesNotMatch(fs.readFileSync(path.join(dir, 'error.log'), 'utf8'), /\[(alert|emerg|crit)\]/);
});

test('NGINX_CONF with a one-line upstream, pusher_broker on the line of "http {" and included apps: the broker listens where it says, the lines name its apps', {
    skip: SKIP_SANITIZE,
    timeout: 90000,
}, async () => {
    const ALPHA = { id: '4711', key: 'alpha-key', secret: 'alpha-secret' };
    const BETA = { id: '4712', key: 'beta-key', secret: 'beta secret', envSecret: "'beta secret'" };
    const port = await freePort();
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'apps.d'));
    fs.writeFileSync(path.join(dir, 'apps.d', '10-alpha.conf'), `pusher_app ${ALPHA.id} { key ${ALPHA.key}; secret ${ALPHA.secret}; }\n`);
    fs.writeFileSync(path.join(dir, 'apps.d', '20-beta.conf'), [
        `pusher_app "${BETA.id}"   # the back office {`,
        '{',
        `    key ${BETA.key};`,
        `    secret "${BETA.secret}";`,
        '}',
    ].join('\n'));
    /* comments a line regex or a split of nginx -T's output would take */
    fs.writeFileSync(path.join(dir, 'nginx.conf'), `# pusher_broker /run/ngx-pusher/control.sock;
# configuration file ${dir}/apps.d/00-old.conf:
user www-data; worker_processes 2; pid ${dir}/nginx.pid; error_log stderr notice;
events { worker_connections 512; }
http { access_log off; pusher_broker "${dir}/control/broker.sock";
    include apps.d/*.conf;
    upstream pusher_broker_api { server unix:${dir}/api/broker-api.sock; keepalive 16; }
    server { listen 127.0.0.1:${port}; server_name _;
        location /app/ { pusher; }
        location /apps/ { proxy_pass http://pusher_broker_api; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
`);

    const r = startRun(dir);
    await waitReady(r);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), expectedLines({ scheme: 'http', host: '127.0.0.1', port, apps: [ALPHA, BETA] }), r.said());
    assertSecretsOnlyInEnv(r, [ALPHA, BETA]);
    for (const s of ['control/broker.sock', 'api/broker-api.sock']) {
        assert.ok(fs.statSync(path.join(dir, s)).isSocket(), `${s}; ${r.said()}`);
    }
    assert.match(r.stderr, new RegExp(`pusher-broker: started: api unix:${dir}/api/broker-api\\.sock, control ${dir}/control/broker\\.sock,`), r.said());

    /* both apps serve, each with its own key and secret */
    const sockets = [];
    for (const app of [ALPHA, BETA]) {
        const ws = await connect(port, app.key);
        assert.equal((await ws.nextEvent()).event, 'pusher:connection_established');
        ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'news' } });
        await ws.expectText(succeededFrame('news'));
        sockets.push(ws);
    }
    assert.equal((await trigger(port, ALPHA, 'news', 'posted', { by: 'alpha' })).status, 200);
    assert.equal((await trigger(port, BETA, 'news', 'posted', { by: 'beta' })).status, 200);
    await sockets[0].expectText(eventFrame('posted', 'news', { by: 'alpha' }));
    await sockets[1].expectText(eventFrame('posted', 'news', { by: 'beta' }));
    await sockets[0].expectNothing(100);
    await sockets[1].expectNothing(50);
    assert.equal((await trigger(port, BETA, 'news', 'x', {}, { secret: ALPHA.secret })).status, 401);

    await stopRun(r, sockets, [path.join(dir, 'control'), path.join(dir, 'api')]);
});

/*
 * nginx's proxy may log a failed connect() to the broker's API socket at
 * [crit] (ENOENT: the socket file is gone): expected while the killed
 * broker is being restarted, as the harness allows it (ALLOWED_LOG_RE)
 */
const API_DOWN_RE = /\[crit\] .*connect\(\) to unix:\S*\/api\.sock failed \((2|111): /;

/* pid runs (and is no zombie) */
function running(pid) {
    try {
        return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
        return false;
    }
}

test('scripts/run with the rendered default config: a broker killed with SIGKILL is restarted, the WebSockets stay open and get events again; Ctrl-C stops cleanly', {
    skip: SKIP_SANITIZE,
    timeout: 90000,
}, async (t) => {
    const APP = { id: '1001', key: 'ngx-pusher-key', secret: 'ngx-pusher-secret' };
    const port = await freePort();
    const dir = tempDir();
    /* conf.examples/nginx.conf as scripts/run renders it, in dir/rt */
    const r = startRun(dir, { NGINX_CONF: undefined, REVERB_HOST: '127.0.0.1', REVERB_PORT: String(port) });
    await waitReady(r);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), expectedLines({ scheme: 'http', host: '127.0.0.1', port, apps: [APP] }), r.said());
    const pidFile = path.join(dir, 'rt', 'broker.pid');
    const first = Number(fs.readFileSync(pidFile, 'utf8'));
    assert.ok(running(first), `broker.pid ${first} does not run; ${r.said()}`);

    const ws = await connect(port, APP.key);
    assert.equal((await ws.nextEvent()).event, 'pusher:connection_established');
    ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'orders' } });
    await ws.expectText(succeededFrame('orders'));
    assert.equal((await trigger(port, APP, 'orders', 'placed', { n: 0 })).status, 200);
    await ws.expectText(eventFrame('placed', 'orders', { n: 0 }));

    const killed = Date.now();
    process.kill(first, 'SIGKILL');

    /* scripts/run stays, and broker.pid names the new broker once it runs */
    const second = await waitUntil(() => {
        if (r.proc.exitCode !== null) {
            return 'exited';
        }
        const pid = Number(fs.readFileSync(pidFile, 'utf8'));
        return pid !== first && running(pid) && pid;
    }, 15000, () => `no new pid in broker.pid; ${r.said()}`, 20);
    assert.notEqual(second, 'exited', `scripts/run exited after the broker's SIGKILL: ${r.said()}`);

    /* the first trigger the new broker accepts reaches the socket, and only
       it: each attempt carries its number */
    let attempt = 0;
    let res;
    await waitUntil(async () => {
        res = await trigger(port, APP, 'orders', 'placed', { n: ++attempt });
        return res.status === 200;
    }, 15000, () => `no 200 for a trigger after the restart (last: ${res && `${res.status} ${res.body}`}); ${r.said()}`, 20);
    await ws.expectText(eventFrame('placed', 'orders', { n: attempt }), { timeout: 5000 });
    const recovery = Date.now() - killed;
    t.diagnostic(`broker SIGKILL to the first event delivered: ${recovery} ms (${attempt} trigger attempt(s) after the new broker ${second} ran)`);

    /* no close frame, no TCP close; scripts/run said what happened */
    await ws.expectNothing(200);
    assert.ok(!ws.ended && !ws.closeFrame, `the WebSocket was closed:\n${ws.dump()}`);
    assert.equal(r.proc.exitCode, null, r.said());
    assert.match(r.stderr, new RegExp(`pusher-broker \\(pid ${first}\\) was killed by SIGKILL`), r.said());
    /* and it still works: the same socket gets the next event at once */
    assert.equal((await trigger(port, APP, 'orders', 'placed', { n: 'last' })).status, 200);
    await ws.expectText(eventFrame('placed', 'orders', { n: 'last' }));

    /* the rendered config serves pusher_metrics at /metrics to loopback;
       the worker that answers may be the one whose reconnect timer has not
       fired yet since the restart (it attaches within a second of the
       broker's return): wait for both, then the page is the whole one */
    let metrics;
    await waitUntil(async () => {
        metrics = await httpRequest(port, 'GET', '/metrics', { tls: false });
        const attached = metrics.body.match(/^pusher_worker_broker_attached\{pid="\d+"\} \d$/gm) || [];
        return metrics.status === 200 && attached.length === 2 && attached.every((l) => l.endsWith(' 1'));
    }, 3000, () => `both workers attached again within 3 s of the first delivery:\n${metrics && metrics.body}`);
    assert.match(metrics.body, /^pusher_connected\{app_id="1001"\} 1$/m, metrics.body);
    assert.match(metrics.body, /^pusher_broker_up 1$/m, metrics.body);

    await stopRun(r, [ws], [], API_DOWN_RE);
});

test('PUSHER_DEBUG=1 scripts/run: the rendered config has pusher_debug on, and the debug lines show live without the secret; a user config without it is refused', {
    skip: SKIP_SANITIZE,
    timeout: 90000,
}, async () => {
    const APP = { id: '1001', key: 'ngx-pusher-key', secret: 'ngx-pusher-secret' };
    const port = await freePort();
    const dir = tempDir();
    const r = startRun(dir, { NGINX_CONF: undefined, PUSHER_DEBUG: '1', REVERB_HOST: '127.0.0.1', REVERB_PORT: String(port) });
    await waitReady(r);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), expectedLines({ scheme: 'http', host: '127.0.0.1', port, apps: [APP] }), r.said());
    assert.match(fs.readFileSync(path.join(dir, 'rt', 'nginx.conf'), 'utf8'), /^\s*pusher_debug on;$/m);
    assert.ok(r.stderr.includes('run: pusher_debug on: each connection, subscription, trigger, delivery and close is logged'), r.said());

    const ws = await connect(port, APP.key, { headers: { Origin: 'http://localhost:5173' } });
    const established = await ws.nextEvent();
    const sid = JSON.parse(established.data).socket_id;
    ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'orders' } });
    await ws.expectText(succeededFrame('orders'));
    assert.equal((await trigger(port, APP, 'orders', 'placed', { n: 1 })).status, 200);
    await ws.expectText(eventFrame('placed', 'orders', { n: 1 }));
    const want = [
        `pusher debug: connect socket ${sid} app 1001 origin "http://localhost:5173" worker ${sid.split('.')[0]}`,
        `pusher debug: subscribe socket ${sid} channel "orders": ok`,
        'pusher-broker: pusher debug: trigger app 1001 event "placed" channel "orders" data 7 bytes: 200 published',
        `${sid.split('.')[0]}#${sid.split('.')[0]}: pusher debug: deliver event "placed" app 1001 channel "orders" (${eventFrame('placed', 'orders', { n: 1 }).length} bytes): 1 local socket`,
    ];
    await waitUntil(() => want.every((w) => r.stderr.includes(w)), 5000, () => `missing ${want.filter((w) => !r.stderr.includes(w)).join(' | ')}; ${r.said()}`);
    assertSecretsOnlyInEnv(r, [APP]);
    await stopRun(r, [ws]);

    /* NGINX_CONF is the user's: PUSHER_DEBUG=1 does not edit it */
    const mine = tempDir();
    fs.writeFileSync(path.join(mine, 'nginx.conf'), edit(fs.readFileSync(path.join(EXAMPLES, 'nginx-two-apps.conf'), 'utf8'), [
        ['listen 8080;', `listen 127.0.0.1:${port};`],
        ['pid /run/ngx-pusher-two-apps.pid;', `pid ${mine}/nginx.pid;`],
        ['/run/ngx-pusher/', `${mine}/sockets/`],
    ]));
    const refused = startRun(mine, { PUSHER_DEBUG: '1' });
    const exit = await within(refused.exited, 30000);
    assert.deepEqual(exit, { code: 1, signal: null }, refused.said());
    assert.match(refused.stderr, /PUSHER_DEBUG=1: add "pusher_debug on;" to the http block of /, refused.said());
});

test('REVERB_SCALING_ENABLED=true with REDIS_HOST, REDIS_PORT and REDIS_PASSWORD: two scripts/run on their own ports form a cluster; the password is only in the rendered config', {
    skip: SKIP_SANITIZE,
    timeout: 90000,
}, async () => {
    const APP = { id: '1001', key: 'ngx-pusher-key', secret: 'ngx-pusher-secret' };
    const password = 'p@ss:w/rd\\"x';
    const redisPort = await freePort();
    const redis = spawn('/usr/bin/redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '',
                                                  '--appendonly', 'no', '--requirepass', password],
                        { stdio: ['ignore', 'pipe', 'pipe'] });
    let redisOut = '';
    redis.stdout.on('data', (d) => { redisOut += d; });
    const redisExited = new Promise((resolve) => redis.on('exit', resolve));
    try {
        await waitUntil(() => /Ready to accept connections/.test(redisOut), 5000, () => `redis-server: ${redisOut}`);
        const env = {
            NGINX_CONF: undefined,
            REVERB_HOST: '127.0.0.1',
            REVERB_SCALING_ENABLED: 'true',
            REVERB_SCALING_CHANNEL: `t${process.pid}`,
            REDIS_HOST: '127.0.0.1',
            REDIS_PORT: String(redisPort),
            REDIS_PASSWORD: password,
        };
        const hosts = [];
        for (let i = 0; i < 2; i++) {
            const port = await freePort();
            const dir = tempDir();
            const r = startRun(dir, { ...env, REVERB_PORT: String(port) });
            hosts.push({ r, port, dir });
        }
        for (const h of hosts) {
            await waitReady(h.r);
            const conf = fs.readFileSync(path.join(h.dir, 'rt', 'nginx.conf'), 'utf8');
            const node = `${os.hostname().split('.')[0]}-${h.port}`;
            assert.match(conf, new RegExp(`^\\s*pusher_cluster "redis://:p%40ss%3Aw%2Frd%5C%22x@127\\.0\\.0\\.1:${redisPort}/0" prefix=t${process.pid}: node=${node};$`, 'm'));
            assert.ok(h.r.stderr.includes(`run: cluster: node ${node} on redis://127.0.0.1:${redisPort}/0`), h.r.said());
            for (const secret of [password, 'p%40ss']) {
                assert.ok(!h.r.stdout.includes(secret) && !h.r.stderr.includes(secret), `the Redis password in the output; ${h.r.said()}`);
            }
        }
        /* both brokers' links are up */
        for (const h of hosts) {
            await waitUntil(async () => {
                const m = await httpRequest(h.port, 'GET', '/metrics', { tls: false });
                return /^pusher_cluster_redis_up\{link="subscribe"\} 1$/m.test(m.body)
                    && /^pusher_cluster_redis_up\{link="publish"\} 1$/m.test(m.body);
            }, 10000, () => `the links of ${h.port} are not up; ${h.r.said()}`);
        }
        /* an event triggered on one reaches a subscriber of the other */
        const ws = await connect(hosts[1].port, APP.key);
        assert.equal((await ws.nextEvent()).event, 'pusher:connection_established');
        ws.sendJson({ event: 'pusher:subscribe', data: { channel: 'orders' } });
        await ws.expectText(succeededFrame('orders'));
        assert.equal((await trigger(hosts[0].port, APP, 'orders', 'placed', { n: 1 })).status, 200);
        await ws.expectText(eventFrame('placed', 'orders', { n: 1 }));
        await stopRun(hosts[0].r, []);
        await stopRun(hosts[1].r, [ws]);
    } finally {
        redis.kill('SIGKILL');
        await redisExited;
    }
});
