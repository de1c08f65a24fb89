'use strict';
// The README's front door with a user's config: `NGINX_CONF=... scripts/run`
// runs conf.examples/nginx-two-apps.conf as it is (only its port and its
// socket and pid paths moved to a temporary place), and the two apps work
// side by side and apart: origins, the same channel name, their secrets.

const assert = require('node:assert/strict');
const { after } = require('node:test');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const {
    test, httpRequest, freePort, waitUntil, sleep, SANITIZE, BUILD,
} = require('./lib/harness');
const { RawWs } = require('./lib/rawws');
const { signedPath } = require('./lib/sign');
const { eventFrame, errorFrame, succeededFrame } = require('./lib/clients');

const REPO = path.resolve(__dirname, '../..');
const EXAMPLE = path.join(REPO, 'conf.examples/nginx-two-apps.conf');

const SHOP = { id: '1001', key: 'shop-key', secret: 'shop-secret' };
const BACKOFFICE = { id: '1002', key: 'backoffice-key', secret: 'backoffice-secret' };

let run = null;
let exited = null;
let dir = null;
const open = [];

/* a failed test still stops nginx and the broker: scripts/run does it on SIGTERM */
after(async () => {
    for (const ws of open) {
        ws.destroy();
    }
    if (run && run.exitCode === null && run.signalCode === null) {
        run.kill('SIGTERM');
        if (await Promise.race([exited, sleep(20000).then(() => null)]) === null) {
            run.kill('SIGKILL');
            for (const f of ['nginx.pid', 'rt/broker.pid']) {
                try {
                    process.kill(Number(fs.readFileSync(path.join(dir, f), 'utf8')), 'SIGKILL');
                } catch {
                    /* not running */
                }
            }
        }
    }
    if (dir) {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

function trigger(port, app, channel, name, data, secret = app.secret) {
    const body = JSON.stringify({ name, channels: [channel], data: JSON.stringify(data) });
    const p = signedPath({ method: 'POST', path: `/apps/${app.id}/events`, body, key: app.key, secret: app.secret, signSecret: secret });
    return httpRequest(port, 'POST', p, { body });
}

async function connect(port, key, headers) {
    const ws = await RawWs.connect(port, `/app/${key}?protocol=7&client=js&version=8.4.0`, { headers });
    open.push(ws);
    return ws;
}

test('NGINX_CONF=conf.examples/nginx-two-apps.conf scripts/run: both apps serve, apart; Ctrl-C stops cleanly', {
    skip: SANITIZE && 'scripts/run starts nginx without the sanitizer runtime',
    timeout: 60000,
}, async () => {
    const port = await freePort();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pusher-run-'));
    fs.chmodSync(dir, 0o755);
    const conf = fs.readFileSync(EXAMPLE, 'utf8')
        .replace('listen 8080;', `listen 127.0.0.1:${port};`)
        .replace('pid /run/ngx-pusher-two-apps.pid;', `pid ${dir}/nginx.pid;`)
        .replaceAll('/run/ngx-pusher/', `${dir}/sockets/`);
    assert.ok(conf.includes(`${dir}/sockets/control.sock`) && conf.includes(`127.0.0.1:${port}`), 'the example has the lines this test moves');
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);

    let output = '';
    run = spawn(path.join(REPO, 'scripts/run'), [], {
        env: {
            ...process.env,
            NGINX_CONF: path.join(dir, 'nginx.conf'),
            PUSHER_NO_BUILD: '1',
            PUSHER_BUILD_DIR: BUILD,
            PUSHER_RUNTIME_DIR: path.join(dir, 'rt'),
            REVERB_HOST: '127.0.0.1',
            REVERB_PORT: String(port),
            PUSHER_SHM: `/ngx-pusher-test-run-${process.pid}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    run.stdout.on('data', (d) => {
        output += d;
    });
    run.stderr.on('data', (d) => {
        output += d;
    });
    exited = new Promise((resolve) => run.on('exit', (code, signal) => resolve({ code, signal })));

    await waitUntil(async () => {
        assert.equal(run.exitCode, null, `scripts/run exited: ${output}`);
        try {
            return (await httpRequest(port, 'GET', '/up', { timeout: 1000 })).status === 200;
        } catch {
            return false;
        }
    }, 15000, () => `GET /up never answered 200; scripts/run said:\n${output}`, 100);

    /* the shop admits browsers of its own domains only */
    const shop = await connect(port, SHOP.key, { Origin: 'https://www.shop.example.com' });
    assert.equal((await shop.nextEvent()).event, 'pusher:connection_established');
    const foreign = await connect(port, SHOP.key, { Origin: 'https://evil.example.org' });
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

    /* the broker needs a moment to learn the apps of both workers */
    await waitUntil(async () => (await trigger(port, SHOP, 'orders', 'placed', { n: 1 })).status === 200, 5000, 'shop trigger accepted');
    await shop.expectText(eventFrame('placed', 'orders', { n: 1 }));
    assert.equal((await trigger(port, BACKOFFICE, 'orders', 'shipped', { n: 2 })).status, 200);
    await office.expectText(eventFrame('shipped', 'orders', { n: 2 }));
    await shop.expectNothing(200);
    await office.expectNothing(50);

    /* each app's API signs with its own secret only */
    assert.equal((await trigger(port, BACKOFFICE, 'orders', 'x', {}, SHOP.secret)).status, 401);
    /* the back office has client events off */
    office.sendJson({ event: 'client-typing', channel: 'orders', data: {} });
    const e = await office.nextEvent();
    assert.equal(e.event, 'pusher:error', e.raw);

    run.kill('SIGINT');
    const exit = await Promise.race([exited, sleep(20000).then(() => 'timeout')]);
    assert.deepEqual(exit, { code: 0, signal: null }, `scripts/run exit; it said:\n${output}`);
    assert.doesNotMatch(output, /\[(alert|emerg|crit)\]/, output);
    await shop.expectText(errorFrame(4200, 'Server is shutting down'));
    await shop.expectClose(4200);
});
