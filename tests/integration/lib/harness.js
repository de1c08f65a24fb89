'use strict';
/*
 * Integration harness: one real pusher-broker and one real Debian nginx
 * (master + 2 workers, reuseport) per Server instance, on random loopback
 * ports, in a fresh temp prefix.
 *
 *   const { startServer, test } = require('./lib/harness');
 *   let srv;
 *   before(async () => { srv = await startServer({ app: { ping_interval: '1s' } }); });
 *   after(async () => { await srv.stop(); });
 *
 * Environment:
 *   PUSHER_BUILD_DIR   build dir holding ngx_http_pusher_module.so and
 *                      broker/pusher-broker (default: <repo>/build)
 *   PUSHER_SANITIZE=1  LD_PRELOAD gcc's libasan + libubsan into nginx and
 *                      fail on any sanitizer report
 *   PUSHER_KEEP=1      keep every prefix (default: only on failure)
 *   PUSHER_NGINX       nginx binary (default /usr/sbin/nginx)
 *   PUSHER_TLS=1       nginx listens with "ssl http2" only, and every
 *                      client speaks wss:// and https:// to it (a Server
 *                      started with {tls: true} does so in any case)
 *   PUSHER_TLS_CERT,   the certificate for 127.0.0.1 and its key that
 *   PUSHER_TLS_KEY     tests/integration/run generates; the clients trust
 *                      it through NODE_EXTRA_CA_CERTS, the broker's https
 *                      webhooks through SSL_CERT_FILE
 *
 * stop() checks error.log for [alert]/[emerg]/[crit] and all captured
 * output for sanitizer reports; it throws (failing the file's after hook)
 * when it finds one.
 */

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const nodeTest = require('node:test');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BUILD = path.resolve(process.env.PUSHER_BUILD_DIR || path.join(REPO, 'build'));
const NGINX = process.env.PUSHER_NGINX || '/usr/sbin/nginx';
const SANITIZE = process.env.PUSHER_SANITIZE === '1';
const KEEP = process.env.PUSHER_KEEP === '1';
const TLS = process.env.PUSHER_TLS === '1';
const TLS_CERT = process.env.PUSHER_TLS_CERT || '';
const TLS_KEY = process.env.PUSHER_TLS_KEY || '';

function checkTlsFiles() {
    if (!(TLS_CERT && TLS_KEY && fs.existsSync(TLS_CERT) && fs.existsSync(TLS_KEY))) {
        throw new Error('TLS needs PUSHER_TLS_CERT and PUSHER_TLS_KEY (tests/integration/run makes them)');
    }
}

if (TLS) {
    checkTlsFiles();
}

/* what the clients speak to nginx */
const HTTP_SCHEME = TLS ? 'https' : 'http';
const WS_SCHEME = TLS ? 'wss' : 'ws';

/* everything is slower under ASan */
const SLOW = SANITIZE ? 3 : 1;

const MODULE_SO = path.join(BUILD, 'ngx_http_pusher_module.so');
const BROKER_BIN = path.join(BUILD, 'broker', 'pusher-broker');

const APP_ID = '424242';
const APP_KEY = 'test-key';
const APP_SECRET = 'test-secret';

const APP_DEFAULTS = {
    activity_timeout: '30s',
    ping_interval: '60s',
    pong_timeout: '30s',
    max_message_size: '10000',
};

const BAD_LOG_RE = /\[(alert|emerg|crit)\]/;
/*
 * nginx's proxy logs a failed connect() to a unix socket at [crit]; tests
 * stop the broker on purpose, so these are expected.
 */
const ALLOWED_LOG_RE = /\[crit\] .*connect\(\) to unix:\S*\/api\.sock failed \((2|111): /;
const SANITIZER_RE = /AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer/;

/* set by the wrapped test() below when any test of this file failed */
let anyFailed = false;

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/* poll fn() until it returns a truthy value; throw msg() after ms */
async function waitUntil(fn, ms, msg, every = 25) {
    const deadline = Date.now() + ms * SLOW;
    let last;
    for (;;) {
        try {
            last = await fn();
            if (last) {
                return last;
            }
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${ms * SLOW} ms: ${typeof msg === 'function' ? msg(last) : msg}`);
        }
        await sleep(every);
    }
}

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function gccLib(name) {
    const p = childProcess.execFileSync('gcc', [`-print-file-name=${name}`], { encoding: 'utf8' }).trim();
    if (!p.startsWith('/')) {
        throw new Error(`gcc -print-file-name=${name} gave no path (${p})`);
    }
    return p;
}

/* "ws://127.0.0.1:port/path", or wss:// under PUSHER_TLS=1 */
function wsUrl(port, urlPath) {
    return `${WS_SCHEME}://127.0.0.1:${port}${urlPath}`;
}

/*
 * HTTP request to nginx, HTTPS under PUSHER_TLS=1 or with tls: true, or
 * with socketPath to a unix socket (the broker's own API socket, past the
 * nginx workers); resolves {status, headers, body, json}
 */
function httpRequest(port, method, urlPath, { body, headers = {}, timeout = 5000, tls = TLS, socketPath } = {}) {
    return new Promise((resolve, reject) => {
        const data = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
        const h = { ...headers };
        if (data !== undefined) {
            h['content-length'] = data.length;
            if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
                h['content-type'] = 'application/json';
            }
        }
        const where = socketPath ? { socketPath } : { host: '127.0.0.1', port };
        const req = (tls && !socketPath ? https : http).request({ ...where, method, path: urlPath, headers: h, agent: false }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let json;
                try {
                    json = JSON.parse(text);
                } catch {
                    json = undefined;
                }
                resolve({ status: res.statusCode, headers: res.headers, body: text, json });
            });
            res.on('error', reject);
        });
        req.setTimeout(timeout * SLOW, () => req.destroy(new Error(`${method} ${urlPath}: no response in ${timeout * SLOW} ms`)));
        req.on('error', reject);
        if (data !== undefined) {
            req.write(data);
        }
        req.end();
    });
}

/* {directive: value} -> lines; an array value gives one line per element */
function directiveLines(settings) {
    return Object.entries(settings || {})
        .flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((one) => `        ${k} ${one};\n`))
        .join('');
}

function renderConf(s) {
    const app = directiveLines(s.app).replace(/\n$/, '');
    /* extra apps: {id, key, secret, app: {directive: value, ...}} */
    const extraApps = (s.extraApps || [])
        .map((a) => {
            const settings = directiveLines(a.app);
            return `    pusher_app ${a.id} {\n        key ${a.key};\n        secret ${a.secret};\n${settings}    }\n`;
        })
        .join('');
    const P = s.prefix;
    /* main-context directives: {worker_shutdown_timeout: '2s', ...} */
    const main = directiveLines(s.main).replace(/^ {8}/gm, '');
    /* http-context directives: {large_client_header_buffers: '4 64k', ...} */
    const httpLines = directiveLines(s.http).replace(/^ {8}/gm, '    ');
    /* browsers open WebSockets over HTTP/1.1 on an "ssl http2" port too */
    const listen = s.tls
        ? `listen 127.0.0.1:${s.port} ssl http2 reuseport;
        ssl_certificate ${TLS_CERT};
        ssl_certificate_key ${TLS_KEY};`
        : `listen 127.0.0.1:${s.port} reuseport;`;
    return `load_module ${MODULE_SO};
user root;
worker_processes 2;
master_process on;
daemon off;
pid ${P}/nginx.pid;
error_log ${P}/error.log info;
events { worker_connections 4096; }
${main}
http {
    access_log ${P}/access.log;
${httpLines}
    client_body_temp_path ${P}/body; proxy_temp_path ${P}/proxy; fastcgi_temp_path ${P}/fastcgi; uwsgi_temp_path ${P}/uwsgi; scgi_temp_path ${P}/scgi;
    pusher_broker ${P}/control.sock;
    pusher_app ${s.appId} {
        key ${s.key};
        secret ${s.secret};
${app}
    }
${extraApps}    upstream pusher_broker_api { server unix:${P}/api.sock; keepalive 8; }
    server {
        ${listen}
        location /app/ { ${directiveLines(s.appLocation).replace(/\n */g, ' ').trim()} pusher; }
        location /apps/ { proxy_pass http://pusher_broker_api; proxy_http_version 1.1; proxy_set_header Connection ""; }
        location = /up { proxy_pass http://pusher_broker_api; proxy_http_version 1.1; proxy_set_header Connection ""; }
        location = /metrics { pusher_metrics; allow 127.0.0.1; deny all; }
    }
}
`;
}

/*
 * The environment of a short nginx run outside a Server (nginx -t): with
 * PUSHER_SANITIZE the sanitizers' runtime preloaded as for the servers'
 * nginx; a report goes to stderr, where the caller's assertions see it.
 */
function nginxEnv() {
    if (!SANITIZE) {
        return process.env;
    }
    return {
        ...process.env,
        ASAN_OPTIONS: 'detect_leaks=0',
        LD_PRELOAD: [gccLib('libasan.so'), gccLib('libubsan.so')].join(':'),
    };
}

/*
 * nginx -t of the harness's configuration with these Server options
 * (plain http): {status, emerg (the [emerg] message without "in FILE:LINE"),
 * stderr}
 */
function nginxTest(opts) {
    const s = new Server({ tls: false, ...opts });
    s.prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pusher-conf-'));
    s.port = 1;
    fs.mkdirSync(s.file('logs'));
    fs.writeFileSync(s.file('nginx.conf'), renderConf(s));
    const r = childProcess.spawnSync(NGINX,
                                     ['-t', '-q', '-p', s.prefix, '-c', s.file('nginx.conf'), '-e', 'stderr'],
                                     { encoding: 'utf8', env: nginxEnv() });
    fs.rmSync(s.prefix, { recursive: true, force: true });
    const m = /\[emerg\] (?:\d+#\d+: )?(.*?)(?: in \/\S+:\d+)?$/m.exec(r.stderr);
    return { status: r.status, emerg: m ? m[1] : null, stderr: r.stderr };
}

class Server {
    constructor(opts = {}) {
        this.appId = opts.appId || APP_ID;
        this.key = opts.key || APP_KEY;
        this.secret = opts.secret || APP_SECRET;
        this.app = { ...APP_DEFAULTS, ...(opts.app || {}) };
        this.extraApps = opts.extraApps || [];
        /* main, http, appLocation (location /app/): {directive: value} */
        this.main = opts.main || {};
        this.http = opts.http || {};
        this.appLocation = opts.appLocation || {};
        /* tls: true listens with "ssl http2" whatever PUSHER_TLS says */
        this.tls = opts.tls === undefined ? TLS : opts.tls;
        if (this.tls) {
            checkTlsFiles();
        }
        /* broker: false starts nginx alone (the test starts the broker later) */
        this.withBroker = opts.broker !== false;
        this.shmName = `/ngx-pusher-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
        this.broker = null;
        this.nginx = null;
        this.problems = [];
        this.clients = new Set();
        this.stopped = false;
        /* extra error.log lines a test expects (see allowLog()) */
        this.allowedLog = [];
    }

    /*
     * Accept error.log lines matching re in stop()'s check, e.g. the
     * master's "[alert] ... worker process N exited on signal 9" after a
     * test SIGKILLs a worker on purpose.
     */
    allowLog(re) {
        this.allowedLog.push(re);
    }

    /*
     * SIGKILL one worker on purpose; resolves the new worker pids once the
     * master has respawned it (2 workers again, pid gone).
     */
    async killWorker(pid) {
        this.allowLog(new RegExp(`\\[alert\\] .*worker process ${pid} exited on signal 9`));
        process.kill(pid, 'SIGKILL');
        await this.waitGone([pid]);
        return waitUntil(() => {
            const now = this.workerPids();
            return now.length === 2 && !now.includes(pid) && now;
        }, 5000, 'master respawned the killed worker');
    }

    get shmPath() {
        return path.join('/dev/shm', this.shmName.slice(1));
    }

    file(name) {
        return path.join(this.prefix, name);
    }

    async init() {
        for (const f of [MODULE_SO, BROKER_BIN]) {
            if (!fs.existsSync(f)) {
                throw new Error(`missing ${f} (build with cmake --build build, or set PUSHER_BUILD_DIR)`);
            }
        }
        this.prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pusher-it-'));
        fs.mkdirSync(this.file('logs'));
        this.port = await freePort();
        fs.writeFileSync(this.file('nginx.conf'), renderConf(this));
        if (this.withBroker) {
            await this.startBroker();
        }
        await this.startNginx();
        if (this.withBroker) {
            await this.waitUp();
            await this.waitReady();
        }
        return this;
    }

    brokerArgs() {
        return [
            '--api', `unix:${this.file('api.sock')}`,
            '--control', this.file('control.sock'),
            '--shm', this.shmName,
            '--socket-mode', '0660',
        ];
    }

    spawnLogged(name, bin, args, env) {
        const out = fs.openSync(this.file(`${name}.stdout`), 'a');
        const err = fs.openSync(this.file(`${name}.stderr`), 'a');
        const child = childProcess.spawn(bin, args, { stdio: ['ignore', out, err], env: { ...process.env, ...env } });
        fs.closeSync(out);
        fs.closeSync(err);
        child.exited = new Promise((resolve) => {
            child.on('exit', (code, signal) => {
                child.exitInfo = { code, signal };
                if (!child.stopping) {
                    this.problems.push(`${name} (pid ${child.pid}) exited unexpectedly: code ${code} signal ${signal}`);
                }
                resolve(child.exitInfo);
            });
        });
        child.on('error', (e) => this.problems.push(`${name}: spawn error ${e.message}`));
        return child;
    }

    sanitizerEnv(tag, preload) {
        if (!SANITIZE) {
            return {};
        }
        const env = {
            ASAN_OPTIONS: `detect_leaks=${tag === 'nginx' ? 0 : 1}:abort_on_error=0:log_path=${this.file(`asan-${tag}`)}`,
            UBSAN_OPTIONS: `print_stacktrace=1:log_path=${this.file(`ubsan-${tag}`)}`,
        };
        if (preload) {
            env.LD_PRELOAD = [gccLib('libasan.so'), gccLib('libubsan.so')].join(':');
        }
        return env;
    }

    async startBroker() {
        for (const s of ['api.sock', 'control.sock']) {
            fs.rmSync(this.file(s), { force: true });
        }
        fs.appendFileSync(this.file('broker.stderr'), `--- start ${new Date().toISOString()}\n`);
        /* https webhook endpoints of the tests use the generated certificate */
        const env = { ...this.sanitizerEnv('broker', false), ...(TLS_CERT ? { SSL_CERT_FILE: TLS_CERT } : {}) };
        this.broker = this.spawnLogged('broker', BROKER_BIN, this.brokerArgs(), env);
        const b = this.broker;
        await waitUntil(
            () => {
                if (b.exitInfo) {
                    throw new Error(`pusher-broker exited early ${JSON.stringify(b.exitInfo)}: ${this.tail('broker.stderr')}`);
                }
                return fs.existsSync(this.file('api.sock')) && fs.existsSync(this.file('control.sock'));
            },
            5000,
            (e) => `pusher-broker sockets did not appear (${e && e.message ? e.message : ''})`,
        );
    }

    /* SIGTERM, wait for exit; SIGKILL (and record a problem) after ms */
    async stopBroker(ms = 5000) {
        const b = this.broker;
        if (!b || b.exitInfo) {
            return b && b.exitInfo;
        }
        b.stopping = true;
        b.kill('SIGTERM');
        const r = await Promise.race([b.exited, sleep(ms * SLOW).then(() => null)]);
        if (!r) {
            this.problems.push(`pusher-broker did not exit within ${ms * SLOW} ms of SIGTERM; killed`);
            b.kill('SIGKILL');
            return b.exited;
        }
        return r;
    }

    async restartBroker() {
        await this.stopBroker();
        await this.startBroker();
    }

    async startNginx() {
        const env = this.sanitizerEnv('nginx', true);
        this.nginx = this.spawnLogged('nginx', NGINX, ['-p', this.prefix, '-c', this.file('nginx.conf'), '-e', this.file('error.log')], env);
        const n = this.nginx;
        await waitUntil(
            () => {
                if (n.exitInfo) {
                    throw new Error(`nginx exited early ${JSON.stringify(n.exitInfo)}: ${this.tail('nginx.stderr')} ${this.tail('error.log')}`);
                }
                return this.workerPids().length === 2;
            },
            5000,
            (e) => `nginx workers did not start (${e && e.message ? e.message : ''})`,
        );
    }

    /* /up through nginx == 200 */
    async waitUp(ms = 5000) {
        await waitUntil(
            async () => {
                if (this.nginx.exitInfo) {
                    throw new Error(`nginx exited ${JSON.stringify(this.nginx.exitInfo)}: ${this.tail('error.log')}`);
                }
                const r = await httpRequest(this.port, 'GET', '/up', { timeout: 1000, tls: this.tls });
                return r.status === 200;
            },
            ms,
            (e) => `GET /up through nginx never returned 200 (last: ${e && e.message ? e.message : e})`,
        );
    }

    /*
     * The broker accepts events for the app: it learns apps from the
     * workers (nginx.conf is the only place they are written), so a signed
     * trigger answers 200 only once a worker has attached.
     */
    async waitReady(ms = 5000) {
        const { signedPath } = require('./sign');
        let last;
        await waitUntil(
            async () => {
                const body = JSON.stringify({ name: 'ready', channels: ['harness-ready'], data: '{}' });
                const p = signedPath({ method: 'POST', path: `/apps/${this.appId}/events`, body, key: this.key, secret: this.secret });
                last = await httpRequest(this.port, 'POST', p, { body, timeout: 1000, tls: this.tls });
                return last.status === 200;
            },
            ms,
            () => `signed trigger never returned 200 (last: ${last ? `${last.status} ${last.body}` : 'no response'})`,
            50,
        );
    }

    get masterPid() {
        return this.nginx && this.nginx.pid;
    }

    /* live worker pids of the master (children), sorted */
    workerPids() {
        const master = this.masterPid;
        const pids = [];
        if (!master) {
            return pids;
        }
        for (const d of fs.readdirSync('/proc')) {
            if (!/^\d+$/.test(d)) {
                continue;
            }
            let stat;
            try {
                stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
            } catch {
                continue;
            }
            /* pid (comm) state ppid ... ; comm may contain spaces */
            const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
            if (Number(rest[1]) === master && rest[0] !== 'Z') {
                const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
                if (cmd.includes('worker process')) {
                    pids.push(Number(d));
                }
            }
        }
        return pids.sort((a, b) => a - b);
    }

    /*
     * Change app settings in nginx.conf (appId, key, secret, app, extraApps
     * as in the constructor options); takes effect at the next reload().
     */
    rewriteConf(opts = {}) {
        if (opts.appId) {
            this.appId = opts.appId;
        }
        if (opts.key) {
            this.key = opts.key;
        }
        if (opts.secret) {
            this.secret = opts.secret;
        }
        if (opts.app) {
            this.app = { ...this.app, ...opts.app };
        }
        if (opts.extraApps) {
            this.extraApps = opts.extraApps;
        }
        fs.writeFileSync(this.file('nginx.conf'), renderConf(this));
    }

    /* SIGHUP: reload; resolves {old, fresh} worker pids once 2 new workers run */
    async reload() {
        const old = this.workerPids();
        process.kill(this.masterPid, 'SIGHUP');
        const fresh = await waitUntil(
            () => {
                const now = this.workerPids().filter((p) => !old.includes(p));
                return now.length >= 2 && now;
            },
            5000,
            'new workers after SIGHUP',
        );
        /* the master tells the old workers to stop accepting shortly after */
        const accepting = () => old.filter((p) => {
            try {
                return !fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('shutting down');
            } catch {
                return false;
            }
        });
        await waitUntil(() => accepting().length === 0, 5000, () => `old workers still accepting: ${accepting()}`, 10);
        return { old, fresh };
    }

    /* resolves when none of pids is alive any more */
    async waitGone(pids, ms = 3000) {
        const alive = () => pids.filter((p) => fs.existsSync(`/proc/${p}`) && !/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8')));
        await waitUntil(() => alive().length === 0, ms, () => `processes still alive: ${alive()}`);
    }

    /* SIGQUIT to the master; resolves with its exit info (SIGKILL after ms) */
    async quit(ms = 5000) {
        const n = this.nginx;
        if (!n || n.exitInfo) {
            return n && n.exitInfo;
        }
        n.stopping = true;
        process.kill(n.pid, 'SIGQUIT');
        const r = await Promise.race([n.exited, sleep(ms * SLOW).then(() => null)]);
        if (!r) {
            this.problems.push(`nginx did not exit within ${ms * SLOW} ms of SIGQUIT (open WebSockets not closed on shutdown?); killed`);
            this.killNginxTree();
            return n.exited;
        }
        return r;
    }

    killNginxTree() {
        this.nginx.stopping = true;
        for (const p of this.workerPids()) {
            try {
                process.kill(p, 'SIGKILL');
            } catch {
                /* gone */
            }
        }
        try {
            this.nginx.kill('SIGKILL');
        } catch {
            /* gone */
        }
    }

    errorLog() {
        try {
            return fs.readFileSync(this.file('error.log'), 'utf8');
        } catch {
            return '';
        }
    }

    accessLog() {
        try {
            return fs.readFileSync(this.file('access.log'), 'utf8');
        } catch {
            return '';
        }
    }

    tail(name, n = 2000) {
        try {
            const t = fs.readFileSync(this.file(name), 'utf8');
            return t.length > n ? `...${t.slice(-n)}` : t;
        } catch {
            return '';
        }
    }

    /* register something with close()/disconnect() to be closed in stop() */
    track(client) {
        this.clients.add(client);
        return client;
    }

    /* log and sanitizer checks; returns a list of problems */
    check() {
        const problems = [...this.problems];
        const bad = this.errorLog()
            .split('\n')
            .filter((l) => BAD_LOG_RE.test(l) && !ALLOWED_LOG_RE.test(l) && !this.allowedLog.some((re) => re.test(l)));
        if (bad.length) {
            problems.push(`error.log has ${bad.length} [alert]/[emerg]/[crit] line(s):\n  ${bad.slice(0, 20).join('\n  ')}`);
        }
        for (const f of fs.readdirSync(this.prefix)) {
            if (!/^(nginx|broker)\.std(out|err)$|^error\.log$|^(asan|ubsan)-/.test(f)) {
                continue;
            }
            const text = fs.readFileSync(this.file(f), 'utf8');
            const m = text.match(SANITIZER_RE);
            if (m) {
                const at = text.indexOf(m[0]);
                problems.push(`sanitizer report in ${f}:\n${text.slice(Math.max(0, at - 200), at + 3000)}`);
            }
        }
        return problems;
    }

    async stop() {
        if (this.stopped) {
            return;
        }
        this.stopped = true;
        for (const c of this.clients) {
            try {
                if (typeof c.disconnect === 'function') {
                    c.disconnect();
                } else if (typeof c.destroy === 'function') {
                    c.destroy();
                } else if (typeof c.close === 'function') {
                    c.close();
                }
            } catch {
                /* already closed */
            }
        }
        this.clients.clear();
        await this.quit();
        await this.stopBroker();
        if (fs.existsSync(this.shmPath)) {
            this.problems.push(`${this.shmPath} still exists after pusher-broker stopped`);
            fs.rmSync(this.shmPath, { force: true });
        }
        const problems = this.check();
        if (problems.length || anyFailed || KEEP) {
            process.stderr.write(`# harness: prefix kept: ${this.prefix}\n`);
        } else {
            fs.rmSync(this.prefix, { recursive: true, force: true });
        }
        if (problems.length) {
            assert.fail(`harness checks failed (prefix ${this.prefix}):\n${problems.join('\n')}`);
        }
    }
}

async function startServer(opts) {
    const s = new Server(opts);
    try {
        await s.init();
    } catch (e) {
        anyFailed = true;
        if (s.nginx && !s.nginx.exitInfo) {
            s.killNginxTree();
        }
        if (s.broker && !s.broker.exitInfo) {
            s.broker.stopping = true;
            s.broker.kill('SIGKILL');
        }
        fs.rmSync(s.shmPath, { force: true });
        if (s.prefix) {
            process.stderr.write(`# harness: prefix kept: ${s.prefix}\n`);
            e.message += `\nprefix: ${s.prefix}\nerror.log:\n${s.tail('error.log')}\nbroker.stderr:\n${s.tail('broker.stderr')}`;
        }
        throw e;
    }
    return s;
}

/* node:test's test() that remembers failures (so the prefix is kept) */
function test(name, opts, fn) {
    if (typeof opts === 'function') {
        fn = opts;
        opts = {};
    }
    const o = { timeout: 30000 * SLOW, ...opts };
    return nodeTest.test(name, o, async (t) => {
        try {
            return await fn(t);
        } catch (e) {
            anyFailed = true;
            throw e;
        }
    });
}

/* socket_id "<worker pid>.<counter>" -> worker pid */
function socketWorker(socketId) {
    return Number(String(socketId).split('.')[0]);
}

module.exports = {
    APP_ID,
    APP_KEY,
    APP_SECRET,
    SANITIZE,
    SLOW,
    BUILD,
    TLS,
    TLS_CERT,
    TLS_KEY,
    HTTP_SCHEME,
    WS_SCHEME,
    wsUrl,
    Server,
    renderConf,
    nginxEnv,
    nginxTest,
    startServer,
    test,
    httpRequest,
    freePort,
    sleep,
    waitUntil,
    socketWorker,
};
