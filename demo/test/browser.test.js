'use strict';
/*
 * The provisioning demo in a real browser: scripts/demo (nginx +
 * pusher-broker + the Node backend) on free loopback ports, Debian's
 * chromium driven by playwright-core.  Every wait is for a state of the
 * page (DOM attributes), never a fixed sleep.
 *
 *   PUSHER_BUILD_DIR  build dir with the module and the broker (demo/test/run sets it)
 *   DEMO_CHROMIUM     the browser (default /usr/bin/chromium)
 *   DEMO_SCREENSHOT   the screenshot (default demo/test/out/demo.png)
 */

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { test, before, after } = require('node:test');

const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.DEMO_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = path.resolve(REPO, process.env.DEMO_SCREENSHOT || path.join('demo', 'test', 'out', 'demo.png'));

/* demo/server.js's steps, in order */
const STEPS = [
    'Creating server',
    'Waiting for SSH',
    'Installing nginx',
    'Installing PHP 8.4',
    'Installing MySQL',
    'Configuring firewall',
    'Deploying site',
];

let demo;           // the scripts/demo child
let output = '';    // its stdout and stderr
let url;
let runtimeDir;
let shm;
let browser;
let page;
const pageErrors = [];
let refetches = 0;  // GET /api/servers/1 since watchSteps()

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function waitForLine(re, ms) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`no ${re} from scripts/demo within ${ms} ms:\n${output}`)), ms);
        const check = () => {
            const m = output.match(re);
            if (m) done(null, m);
        };
        const onExit = (code, sig) => done(new Error(`scripts/demo exited (${code ?? sig}) during start:\n${output}`));
        function done(err, m) {
            clearTimeout(timer);
            demo.stdout.off('data', check);
            demo.off('exit', onExit);
            if (err) reject(err); else resolve(m);
        }
        demo.stdout.on('data', check);
        demo.on('exit', onExit);
        check();
    });
}

const card = (id) => `[data-testid="server-${id}"]`;

before(async () => {
    const [reverbPort, demoPort] = [await freePort(), await freePort()];
    runtimeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pusher-demo-test.'));
    shm = `/ngx-pusher-demo-test-${process.pid}`;
    demo = childProcess.spawn(path.join(REPO, 'scripts', 'demo'), [], {
        cwd: REPO,
        env: {
            ...process.env,
            PUSHER_NO_BUILD: '1',
            REVERB_PORT: String(reverbPort),
            DEMO_PORT: String(demoPort),
            PUSHER_RUNTIME_DIR: runtimeDir,
            PUSHER_SHM: shm,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    demo.stdout.setEncoding('utf8');
    demo.stderr.setEncoding('utf8');
    demo.stdout.on('data', (d) => { output += d; });
    demo.stderr.on('data', (d) => { output += d; });

    const t0 = Date.now();
    [, url] = await waitForLine(/^demo: open (http:\S+)$/m, 60000);
    await waitForLine(/^ready$/m, 10000);
    console.log(`scripts/demo ready in ${Date.now() - t0} ms at ${url}`);

    const t1 = Date.now();
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // as root chromium runs only without its sandbox
        args: process.getuid() === 0 ? ['--no-sandbox'] : [],
    });
    page = await browser.newPage({ viewport: { width: 1000, height: 510 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('request', (r) => {
        if (r.method() === 'GET' && new URL(r.url()).pathname === '/api/servers/1') refetches++;
    });
    console.log(`chromium ${browser.version()} launched in ${Date.now() - t1} ms`);
});

after(async () => {
    if (browser) await browser.close();
    if (!demo) return;
    /* Ctrl-C: the backend, then nginx (gracefully) and the broker stop */
    if (demo.exitCode === null && demo.signalCode === null) {
        const exited = new Promise((resolve) => demo.on('exit', (code, sig) => resolve(code ?? sig)));
        demo.kill('SIGINT');
        const code = await exited;
        assert.equal(code, 0, `scripts/demo exited with ${code} after SIGINT:\n${output}`);
    }
    assert.match(output, /^demo: stopped$/m);
    assert.ok(!fs.existsSync(runtimeDir), `${runtimeDir} left behind`);
    assert.ok(!fs.existsSync(`/dev/shm${shm}`), `/dev/shm${shm} left behind`);
    assert.deepEqual(pageErrors, [], 'errors in the page');
});

test('the page connects; server 1 is subscribed, server 2 is refused by /broadcasting/auth', async () => {
    await page.goto(url);
    await page.waitForSelector('[data-testid="connection"]:text-is("connected")');
    await page.waitForSelector(`${card(1)}[data-subscription="subscribed"][data-status="new"]`);

    const names = await page.$$eval(`${card(1)} li[data-step]`, (l) => l.map((e) => [e.dataset.step, e.dataset.state]));
    assert.deepEqual(names, STEPS.map((s) => [s, 'pending']));

    /* the user does not own server 2: the channel is refused with 403 */
    await page.waitForSelector(`${card(2)}[data-subscription="refused"]`);
    const subError = await page.textContent(`${card(2)} [data-testid="subscription-error"]`);
    assert.match(subError, /\(403\)/);
    assert.match(subError, /\/broadcasting\/auth/);
    assert.match(await page.textContent(`${card(2)} [data-testid="load-error"]`), /403 This action is unauthorized/);
    assert.equal(await page.$(`${card(2)} button`), null, 'no Provision button for server 2');

    /* and so are its API routes */
    const codes = await page.evaluate(async () => [
        (await fetch('/api/servers/2/provision', { method: 'POST' })).status,
        (await fetch('/broadcasting/auth', {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
            body: 'socket_id=1.1&channel_name=private-servers.2.provision',
        })).status,
    ]);
    assert.deepEqual(codes, [403, 403]);
});

/* records each step's state changes, in the order the page renders them */
async function watchSteps(id) {
    refetches = 0;
    await page.evaluate((sel) => {
        window.__stepLog = [];
        const ol = document.querySelector(`${sel} [data-testid="steps"]`);
        window.__stepObserver?.disconnect();
        window.__stepObserver = new MutationObserver((records) => {
            for (const r of records) {
                window.__stepLog.push([r.target.dataset.step, r.target.dataset.state]);
            }
        });
        window.__stepObserver.observe(ol, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
    }, card(id));
}

/* checkRun ID MODE EVERY: waits for the run's last event and the state it
   makes the page fetch; EVERY: each event arrives, else (a channel whose
   bursts nginx may coalesce) the events are an in-order part of them */
async function checkRun(id, mode, every) {
    await page.waitForSelector(
        `${card(id)}[data-status="ready"][data-mode="${mode}"][data-last-event="ready"]`,
        { timeout: 30000 });
    const events = await page.$$eval(`${card(id)} [data-testid="event-log"] li`, (l) => l.map((e) => e.textContent));
    const all = [...STEPS, 'ready'];
    if (every) {
        assert.deepEqual(events, all, 'one ServerProvisionUpdated per step, in order, then ready');
    } else {
        let i = 0;
        for (const e of events) {
            while (i < all.length && all[i] !== e) i++;
            assert.ok(i < all.length, `events out of order: ${JSON.stringify(events)}`);
            i++;
        }
    }
    assert.equal(await page.textContent(`${card(id)} [data-testid="event-count"]`), String(events.length));

    /* "something changed": each event made the page refetch the server
       once (the last request events may still be on their way to us) */
    for (let t = Date.now(); refetches < events.length && Date.now() - t < 5000;) {
        await page.waitForTimeout(20);
    }
    assert.equal(refetches, events.length, `${refetches} refetches for ${events.length} events`);
    const final = await page.$$eval(`${card(id)} li[data-step]`, (l) => l.map((e) => [e.dataset.step, e.dataset.state]));
    assert.deepEqual(final, STEPS.map((s) => [s, 'done']));
    assert.match(await page.textContent(`${card(id)} .events`), new RegExp(`\\(${mode} mode\\)`));

    /* the page never showed a step done before the one above it */
    const log = await page.evaluate(() => window.__stepLog);
    const doneOrder = [];
    for (const [step, state] of log) {
        if (state === 'done' && !doneOrder.includes(step)) doneOrder.push(step);
    }
    assert.deepEqual(doneOrder, STEPS, `steps turned done out of order: ${JSON.stringify(log)}`);
    return { log, events };
}

test('Provision walks server 1 through its steps, in order, to ready', async () => {
    await watchSteps(1);
    const t0 = Date.now();
    await page.click(`${card(1)} button:text-is("Provision")`);
    await page.waitForSelector(`${card(1)}[data-status="provisioning"]`);

    /* the screenshot, mid-run: four steps done, the fifth running */
    try {
        await page.waitForSelector(`${card(1)} li[data-step="Installing MySQL"][data-state="running"]`,
                                   { timeout: 10000 });
    } catch (e) {
        /* what the page saw instead, for the failure message */
        const events = await page.$$eval(`${card(1)} [data-testid="event-log"] li`, (l) => l.map((x) => x.textContent));
        const steps = await page.evaluate(() => window.__stepLog);
        throw new Error(`${e.message}\nevents: ${JSON.stringify(events)}\nstep states: ${JSON.stringify(steps)}`
                        + `\nrefetches: ${refetches}, after ${Date.now() - t0} ms`);
    }
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, animations: 'disabled' });
    const png = fs.readFileSync(SCREENSHOT);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.ok(png.length > 10000, `screenshot of ${png.length} bytes`);
    console.log(`screenshot ${SCREENSHOT} (${png.length} bytes)`);

    const { log } = await checkRun(1, 'normal', true);
    /* 400 ms a step: the page shows each of them running */
    const running = log.filter(([, st]) => st === 'running').map(([s]) => s);
    assert.deepEqual([...new Set(running)], STEPS, 'each step shown running');
    console.log(`normal run: ${Date.now() - t0} ms`);
});

/* scripts/demo runs the app with "coalesce private-servers.* 200ms;"
   unless PUSHER_APP_DIRECTIVES says otherwise */
const COALESCED = process.env.PUSHER_APP_DIRECTIVES === undefined;

test('fast mode: a step every 50 ms, the events arrive in order, coalesced, the page ends ready', async () => {
    await watchSteps(1);
    const t0 = Date.now();
    await page.click(`${card(1)} button:text-is("Provision (fast, 50 ms steps)")`);
    const { events } = await checkRun(1, 'fast', !COALESCED);
    if (COALESCED) {
        /* 8 events in ~400 ms under a 200 ms window: deliveries at least
           200 ms apart, the last within 200 ms of "ready" */
        assert.ok(events.length >= 1 && events.length <= 4, `${events.length} events: ${JSON.stringify(events)}`);
    }
    console.log(`fast run: ${Date.now() - t0} ms, ${events.length} events${COALESCED ? ' (coalesced)' : ''}`);
});
