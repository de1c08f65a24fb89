'use strict';
/*
 * The provisioning demo's app backend: what a small Laravel app does, in
 * plain Node.
 *
 *   - GET  /                          the React page (bundled at start by
 *                                     esbuild, as `vite build` would)
 *   - GET  /api/servers/{id}          the server as JSON: name, status,
 *                                     steps (403 for a server the user
 *                                     does not own, like a policy)
 *   - POST /api/servers/{id}/provision[?fast=1]
 *                                     walks the server through its steps,
 *                                     broadcasting ServerProvisionUpdated on
 *                                     private-servers.{id}.provision at each
 *                                     (every 400 ms, fast: every 50 ms)
 *   - POST /broadcasting/auth         signs private-servers.{id}.provision
 *                                     for the servers the user owns, 403
 *                                     otherwise, as Laravel's
 *                                     Broadcast::channel('servers.{id}.provision',
 *                                         fn ($user, $id) => $user->id === Server::find($id)?->user_id)
 *
 * The user is fixed (id 1, "signed in"); it owns server 1, not server 2.
 * Broadcasting is the `pusher` SDK against nginx's HTTP API
 * (/apps/{id}/events), which is what Laravel's reverb/pusher broadcaster
 * does for a ShouldBroadcastNow event: the event name is the class name,
 * App\Events\ServerProvisionUpdated, and Echo's .listen('ServerProvisionUpdated')
 * adds that namespace.
 *
 * Environment: DEMO_HOST, DEMO_PORT (default 127.0.0.1:8000), REVERB_APP_ID,
 * REVERB_APP_KEY, REVERB_APP_SECRET, REVERB_HOST, REVERB_PORT, REVERB_SCHEME
 * (the Laravel .env values scripts/run prints), DEMO_STEP_MS (400),
 * DEMO_FAST_STEP_MS (50).
 */

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const Pusher = require('pusher');
const esbuild = require('esbuild');

const env = process.env;
const HOST = env.DEMO_HOST || '127.0.0.1';
const PORT = Number(env.DEMO_PORT || 8000);
const STEP_MS = Number(env.DEMO_STEP_MS || 400);
const FAST_STEP_MS = Number(env.DEMO_FAST_STEP_MS || 50);

const reverb = {
    appId: env.REVERB_APP_ID || '1001',
    key: env.REVERB_APP_KEY || 'ngx-pusher-key',
    secret: env.REVERB_APP_SECRET || 'ngx-pusher-secret',
    host: env.REVERB_HOST || '127.0.0.1',
    port: env.REVERB_PORT || '8080',
    scheme: env.REVERB_SCHEME || 'http',
};

/* config/broadcasting.php's 'reverb' connection */
const pusher = new Pusher({
    appId: reverb.appId,
    key: reverb.key,
    secret: reverb.secret,
    host: reverb.host.replace(/^\[|\]$/g, ''),
    port: reverb.port,
    useTLS: reverb.scheme === 'https',
});

const EVENT = 'App\\Events\\ServerProvisionUpdated';

const STEPS = [
    'Creating server',
    'Waiting for SSH',
    'Installing nginx',
    'Installing PHP 8.4',
    'Installing MySQL',
    'Configuring firewall',
    'Deploying site',
];

const user = { id: 1, name: 'Taylor' };

const servers = new Map([
    [1, { id: 1, name: 'web-1', ip: '10.0.0.11', user_id: 1 }],
    [2, { id: 2, name: 'db-1', ip: '10.0.0.12', user_id: 2 }],
]);
for (const s of servers.values()) reset(s);

function reset(s) {
    s.status = 'new';
    s.mode = null;
    s.version = (s.version || 0) + 1;
    s.steps = STEPS.map((name) => ({ name, state: 'pending' }));
}

function view(s) {
    return {
        id: s.id, name: s.name, ip: s.ip, status: s.status, mode: s.mode,
        version: s.version, steps: s.steps,
    };
}

/* routes/channels.php */
const channels = [
    [/^servers\.(\d+)\.provision$/, (u, id) => servers.get(Number(id))?.user_id === u.id],
];

function authorizeChannel(u, name) {
    const bare = name.replace(/^(private|presence)-/, '');
    if (bare === name) return false;       // public channels need no auth
    for (const [re, cb] of channels) {
        const m = bare.match(re);
        if (m) return cb(u, ...m.slice(1));
    }
    return false;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ServerProvisionUpdated implements ShouldBroadcastNow; the caller has
   changed the server (and its version) in the same tick */
async function broadcast(s, step) {
    await pusher.trigger(`private-servers.${s.id}.provision`, EVENT, {
        server_id: s.id, status: s.status, step,
    });
}

async function provision(s, fast) {
    const ms = fast ? FAST_STEP_MS : STEP_MS;
    reset(s);
    s.status = 'provisioning';
    s.mode = fast ? 'fast' : 'normal';
    try {
        for (let i = 0; i < s.steps.length; i++) {
            if (i > 0) s.steps[i - 1].state = 'done';
            s.steps[i].state = 'running';
            s.version++;
            await broadcast(s, s.steps[i].name);
            await sleep(ms);
        }
        s.steps[s.steps.length - 1].state = 'done';
        s.status = 'ready';
        s.version++;
        await broadcast(s, null);
    } catch (err) {
        s.status = 'failed';
        s.version++;
        console.error(`demo: broadcasting for server ${s.id} failed: ${err.message}`);
        try { await broadcast(s, null); } catch { /* reported above */ }
    }
}


/* --- the page, bundled once at start -------------------------------------- */

function bundle() {
    /* Vite replaces import.meta.env.VITE_* at build time; so does this */
    const viteEnv = {
        VITE_REVERB_APP_KEY: reverb.key,
        VITE_REVERB_HOST: reverb.host,
        VITE_REVERB_PORT: reverb.port,
        VITE_REVERB_SCHEME: reverb.scheme,
    };
    const out = esbuild.buildSync({
        entryPoints: [path.join(__dirname, 'src', 'main.jsx')],
        bundle: true,
        minify: true,
        format: 'esm',
        target: 'es2020',
        jsx: 'automatic',
        write: false,
        logLevel: 'warning',
        define: {
            'import.meta.env': JSON.stringify(viteEnv),
            'process.env.NODE_ENV': '"production"',
        },
    });
    return Buffer.from(out.outputFiles[0].contents);
}

const t0 = Date.now();
const appJs = bundle();
const indexHtml = fs.readFileSync(path.join(__dirname, 'src', 'index.html'));
const bundleMs = Date.now() - t0;


/* --- HTTP --------------------------------------------------------------- */

function send(res, code, type, body) {
    res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    res.end(body);
}

function json(res, code, obj) {
    send(res, code, 'application/json', JSON.stringify(obj));
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let n = 0;
        req.on('data', (c) => {
            n += c.length;
            if (n > 65536) { reject(new Error('body too large')); req.destroy(); return; }
            chunks.push(c);
        });
        req.on('end', () => resolve(Buffer.concat(chunks).toString()));
        req.on('error', reject);
    });
}

const forbidden = (res) => json(res, 403, { message: 'This action is unauthorized.' });

async function handle(req, res) {
    const url = new URL(req.url, 'http://demo');
    const p = url.pathname;
    let m;

    if (req.method === 'GET' && p === '/') return send(res, 200, 'text/html; charset=utf-8', indexHtml);
    if (req.method === 'GET' && p === '/app.js') return send(res, 200, 'text/javascript', appJs);
    if (req.method === 'GET' && p === '/up') return json(res, 200, { health: 'OK' });
    if (req.method === 'GET' && p === '/favicon.ico') return send(res, 204, 'image/x-icon', '');
    if (req.method === 'GET' && p === '/api/user') return json(res, 200, user);

    if ((m = p.match(/^\/api\/servers\/(\d+)$/)) && req.method === 'GET') {
        const s = servers.get(Number(m[1]));
        if (!s) return json(res, 404, { message: 'Not found.' });
        if (s.user_id !== user.id) return forbidden(res);
        return json(res, 200, view(s));
    }

    if ((m = p.match(/^\/api\/servers\/(\d+)\/provision$/)) && req.method === 'POST') {
        const s = servers.get(Number(m[1]));
        if (!s) return json(res, 404, { message: 'Not found.' });
        if (s.user_id !== user.id) return forbidden(res);
        if (s.status === 'provisioning') return json(res, 409, { message: 'Already provisioning.' });
        provision(s, url.searchParams.get('fast') === '1');
        return json(res, 202, view(s));
    }

    if (p === '/broadcasting/auth' && req.method === 'POST') {
        /* pusher-js posts socket_id and channel_name form-encoded */
        const form = new URLSearchParams(await readBody(req));
        const socketId = form.get('socket_id') || '';
        const channel = form.get('channel_name') || '';
        if (!/^\d+\.\d+$/.test(socketId) || !authorizeChannel(user, channel)) {
            console.log(`demo: /broadcasting/auth refused ${channel} for user ${user.id}`);
            return forbidden(res);
        }
        return json(res, 200, pusher.authorizeChannel(socketId, channel));
    }

    return json(res, 404, { message: 'Not found.' });
}

const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
        console.error(`demo: ${req.method} ${req.url}: ${err.message}`);
        if (!res.headersSent) json(res, 500, { message: 'Server error.' });
    });
});

server.listen(PORT, HOST, () => {
    const h = HOST.includes(':') ? `[${HOST}]` : HOST;
    console.log(`demo: backend on http://${h}:${PORT}/ (page bundled in ${bundleMs} ms),` +
        ` broadcasting to ${reverb.scheme}://${reverb.host}:${reverb.port}/apps/${reverb.appId}`);
});

function stop() {
    server.close();
    server.closeAllConnections();
    process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
