'use strict';
// Coalescing ("coalesce pattern window [events=...]" of a pusher_app): per
// channel and event name the first event after a quiet window is delivered
// at once, the ones that follow within the window are held and only the
// latest goes out when it ends. pusher-js with 50 events 20 ms apart; exact
// frames for socket_id exclusion, cache channels, batch_events with
// events=, multi-channel triggers and info; nginx -t on bad lines.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { before, after, describe } = require('node:test');

const { startServer, test, sleep, waitUntil, socketWorker, nginxEnv, httpRequest, SLOW, BUILD } = require('./lib/harness');
const {
    connectRaw, connectRawAcrossWorkers, subscribeRaw, eventFrame, succeededFrame, sdk, sdkTrigger, pusherJs,
    pjsSubscribe, channelAuth,
} = require('./lib/clients');

/* the slack of a timer and a delivery on a loaded machine */
const SLACK = 150 * SLOW;

const RULES = [
    'private-servers.* 500ms',
    'live.* 300ms',
    'cache-board* 300ms',
    'batch.* 300ms events=moved,resized',
    'slow.* 3s',
];

/* an app without coalesce lines */
const OTHER = { id: '777', key: 'other-key', secret: 'other-secret' };

/* pusher_metrics through nginx (the harness's /metrics location) */
async function metricsPage(s) {
    const r = await httpRequest(s.port, 'GET', '/metrics', { tls: s.tls });
    assert.equal(r.status, 200);
    return r.body;
}

/* the app's pusher_events_coalesced_total (per app) */
async function coalescedTotal(s, appId = s.appId) {
    const m = new RegExp(`^pusher_events_coalesced_total\\{app_id="${appId}"\\} (\\d+)$`, 'm').exec(await metricsPage(s));
    assert.ok(m, `pusher_events_coalesced_total{app_id="${appId}"} on /metrics`);
    return Number(m[1]);
}

describe('coalesce', () => {
    let srv;
    let api;

    before(async () => {
        srv = await startServer({ app: { coalesce: RULES }, extraApps: [OTHER] });
        api = sdk(srv);
    });

    after(async () => {
        await srv.stop();
    });

    test('pusher-js: 50 events 20 ms apart, 500 ms window: at most 4 arrive, the last is the 50th within 500 ms; an uncoalesced channel gets all 50', async () => {
        const clients = [];
        for (let i = 0; i < 2 || new Set(clients.map((c) => socketWorker(c.connection.socket_id))).size < 2; i++) {
            assert.ok(i < 40, 'pusher-js clients all landed on one worker');
            clients.push(await pusherJs(srv));
        }
        const got = new Map();
        for (const c of clients) {
            const mine = { coalesced: [], plain: [] };
            got.set(c, mine);
            const a = await pjsSubscribe(c, 'private-servers.7');
            a.bind('state', (d) => mine.coalesced.push({ n: d.n, t: Date.now() }));
            const b = await pjsSubscribe(c, 'servers-plain');
            b.bind('state', (d) => mine.plain.push({ n: d.n, t: Date.now() }));
        }

        const coalescedBefore = await coalescedTotal(srv);
        const start = Date.now();
        let sent50 = 0;
        for (let n = 1; n <= 50; n++) {
            const wait = start + (n - 1) * 20 - Date.now();
            if (wait > 0) {
                await sleep(wait);
            }
            if (n === 50) {
                sent50 = Date.now();
            }
            /* one trigger on both channels: coalescing is per channel */
            const r = await sdkTrigger(api, ['private-servers.7', 'servers-plain'], 'state', { n });
            assert.equal(r.status, 200);
            assert.equal(r.body, '{}');
        }

        await waitUntil(() => [...got.values()].every((m) => m.plain.length === 50
                                                         && m.coalesced.length > 0
                                                         && m.coalesced[m.coalesced.length - 1].n === 50),
                        (1000 + SLACK) * SLOW,
                        () => `received: ${JSON.stringify([...got.values()].map((m) => ({ coalesced: m.coalesced.map((e) => e.n), plain: m.plain.length })))}`);
        /* nothing else comes after the 50th */
        await sleep(700);
        for (const [c, m] of got) {
            const ns = m.coalesced.map((e) => e.n);
            assert.deepEqual(m.plain.map((e) => e.n), Array.from({ length: 50 }, (_, i) => i + 1), `${c.connection.socket_id}: uncoalesced`);
            assert.ok(ns.length >= 2 && ns.length <= 4, `${c.connection.socket_id}: ${ns.length} events ${ns}`);
            assert.equal(ns[0], 1, `the first goes at once: ${ns}`);
            assert.equal(ns[ns.length - 1], 50, `the last is the 50th: ${ns}`);
            for (let i = 1; i < ns.length; i++) {
                assert.ok(ns[i] > ns[i - 1], `in order: ${ns}`);
                /* deliveries are a window apart (timer and socket slack) */
                assert.ok(m.coalesced[i].t - m.coalesced[i - 1].t >= 500 - 60, `${ns}: ${m.coalesced.map((e) => e.t - start)}`);
            }
            const late = m.coalesced[m.coalesced.length - 1].t - sent50;
            assert.ok(late <= 500 + SLACK, `the 50th arrived ${late} ms after its trigger`);
        }
        /* what the broker counts: every event of the 50 not delivered */
        const delivered = [...got.values()][0].coalesced.length;
        assert.equal(await coalescedTotal(srv) - coalescedBefore, 50 - delivered);
        assert.match(await metricsPage(srv), new RegExp(`^pusher_events_coalesce_held\\{app_id="${srv.appId}"\\} 0$`, 'm'));
        for (const c of clients) {
            c.disconnect();
        }
    });

    test('socket_id: a held event keeps its own, the latest one\'s applies when it replaces another', async () => {
        const [a, b] = await connectRawAcrossWorkers(srv, 2);
        for (const ws of [a, b]) {
            await subscribeRaw(ws, 'live.s');
        }
        await sdkTrigger(api, 'live.s', 'e', { v: 1 });
        for (const ws of [a, b]) {
            await ws.expectText(eventFrame('e', 'live.s', { v: 1 }));
        }
        /* held: 2 leaves out a, then 3 leaves out b and replaces it */
        await sdkTrigger(api, 'live.s', 'e', { v: 2 }, { socket_id: a.socketId });
        await sdkTrigger(api, 'live.s', 'e', { v: 3 }, { socket_id: b.socketId });
        await a.expectText(eventFrame('e', 'live.s', { v: 3 }), { timeout: 300 + SLACK });
        await b.expectNothing(300 + SLACK);
        await a.expectNothing(300);

        /* a quiet window later: 4 at once to both, 5 held leaving out b */
        await sdkTrigger(api, 'live.s', 'e', { v: 4 });
        for (const ws of [a, b]) {
            await ws.expectText(eventFrame('e', 'live.s', { v: 4 }));
        }
        await sdkTrigger(api, 'live.s', 'e', { v: 5 }, { socket_id: b.socketId });
        await a.expectText(eventFrame('e', 'live.s', { v: 5 }), { timeout: 300 + SLACK });
        await b.expectNothing(300 + SLACK);
        a.close();
        b.close();
    });

    test('per channel and event name: other names and other channels are coalesced apart; a channel without a rule is not', async () => {
        const ws = await connectRaw(srv);
        for (const ch of ['live.x', 'live.y', 'other.x']) {
            await subscribeRaw(ws, ch);
        }
        const t0 = Date.now();
        await sdkTrigger(api, 'live.x', 'a', { v: 1 });
        await sdkTrigger(api, 'live.x', 'b', { v: 1 });
        await sdkTrigger(api, 'live.y', 'a', { v: 1 });
        await sdkTrigger(api, 'other.x', 'a', { v: 1 });
        await sdkTrigger(api, 'live.x', 'a', { v: 2 });
        await sdkTrigger(api, 'other.x', 'a', { v: 2 });
        await ws.expectText(eventFrame('a', 'live.x', { v: 1 }));
        await ws.expectText(eventFrame('b', 'live.x', { v: 1 }));
        await ws.expectText(eventFrame('a', 'live.y', { v: 1 }));
        await ws.expectText(eventFrame('a', 'other.x', { v: 1 }));
        await ws.expectText(eventFrame('a', 'other.x', { v: 2 }));
        await ws.expectText(eventFrame('a', 'live.x', { v: 2 }), { timeout: 300 + SLACK });
        assert.ok(Date.now() - t0 >= 300 - 20, `the held one came after ${Date.now() - t0} ms`);
        await ws.expectNothing(400);
        ws.close();
    });

    test('a multi-channel trigger is coalesced per channel; info is answered for a held event', async () => {
        const ws = await connectRaw(srv);
        await subscribeRaw(ws, 'live.m1');
        await subscribeRaw(ws, 'plain-m');
        await sdkTrigger(api, 'live.m1', 'e', { v: 0 });
        await ws.expectText(eventFrame('e', 'live.m1', { v: 0 }));
        /* live.m1 is within its window: held; plain-m at once */
        const r = await sdkTrigger(api, ['live.m1', 'plain-m'], 'e', { v: 1 }, { info: 'subscription_count' });
        assert.equal(r.status, 200);
        assert.deepEqual(JSON.parse(r.body), {
            channels: { 'live.m1': { subscription_count: 1 }, 'plain-m': { subscription_count: 1 } },
        });
        await ws.expectText(eventFrame('e', 'plain-m', { v: 1 }));
        await ws.expectText(eventFrame('e', 'live.m1', { v: 1 }), { timeout: 300 + SLACK });
        await ws.expectNothing(400);
        ws.close();
    });

    test('cache channels keep what was delivered: the held event only once its window ended', async () => {
        await sdkTrigger(api, 'cache-board', 'score', { v: 1 });
        await sdkTrigger(api, 'cache-board', 'score', { v: 2 });
        await sdkTrigger(api, 'cache-board', 'score', { v: 3 });
        const early = await connectRaw(srv);
        early.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-board"}}');
        await early.expectText(succeededFrame('cache-board'));
        await early.expectText(eventFrame('score', 'cache-board', { v: 1 }));
        /* then the held 3 as an event, 2 never */
        await early.expectText(eventFrame('score', 'cache-board', { v: 3 }), { timeout: 300 + SLACK });
        await early.expectNothing(300);
        const late = await connectRaw(srv);
        late.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-board"}}');
        await late.expectText(succeededFrame('cache-board'));
        await late.expectText(eventFrame('score', 'cache-board', { v: 3 }));
        early.close();
        late.close();
    });

    test('batch_events: each item on its own; events= limits a line to the names it lists', async () => {
        const ws = await connectRaw(srv);
        await subscribeRaw(ws, 'batch.1');
        const r = await api.triggerBatch([
            { channel: 'batch.1', name: 'moved', data: '1' },
            { channel: 'batch.1', name: 'moved', data: '2' },
            { channel: 'batch.1', name: 'created', data: '1' },
            { channel: 'batch.1', name: 'created', data: '2' },
            { channel: 'batch.1', name: 'resized', data: '1' },
            { channel: 'batch.1', name: 'moved', data: '3' },
            { channel: 'batch.1', name: 'resized', data: '2' },
        ]);
        assert.equal(r.status, 200);
        assert.equal(await r.text(), '{}');
        await ws.expectText(eventFrame('moved', 'batch.1', '1'));
        await ws.expectText(eventFrame('created', 'batch.1', '1'));
        await ws.expectText(eventFrame('created', 'batch.1', '2'));
        await ws.expectText(eventFrame('resized', 'batch.1', '1'));
        /* at the window's end, in the order of their windows */
        await ws.expectText(eventFrame('moved', 'batch.1', '3'), { timeout: 300 + SLACK });
        await ws.expectText(eventFrame('resized', 'batch.1', '2'));
        await ws.expectNothing(400);
        ws.close();
    });

    test('other apps are apart: the same channel in an app without the line is not coalesced', async () => {
        const ws = await connectRaw(srv, { key: OTHER.key });
        await subscribeRaw(ws, 'live.o');
        const other = sdk(srv, { appId: OTHER.id, key: OTHER.key, secret: OTHER.secret });
        for (let v = 1; v <= 3; v++) {
            await sdkTrigger(other, 'live.o', 'e', { v });
        }
        for (let v = 1; v <= 3; v++) {
            await ws.expectText(eventFrame('e', 'live.o', { v }));
        }
        await ws.expectNothing(400);
        ws.close();
        /* the metrics are per app: one without coalesce lines has none */
        const page = await metricsPage(srv);
        assert.match(page, new RegExp(`^pusher_events_coalesce_held\\{app_id="${srv.appId}"\\} \\d+$`, 'm'));
        assert.doesNotMatch(page, new RegExp(`^pusher_events_coalesce[a-z_]*\\{app_id="${OTHER.id}"\\}`, 'm'));
    });

    test('client events are never coalesced', async () => {
        const [a, b] = await connectRawAcrossWorkers(srv, 2);
        for (const ws of [a, b]) {
            await subscribeRaw(ws, 'private-servers.c', channelAuth(srv.key, srv.secret, ws.socketId, 'private-servers.c'));
        }
        for (let i = 1; i <= 5; i++) {
            a.sendJson({ event: 'client-move', channel: 'private-servers.c', data: { i } });
        }
        for (let i = 1; i <= 5; i++) {
            await b.expectText(JSON.stringify({ event: 'client-move', channel: 'private-servers.c', data: { i } }));
        }
        a.close();
        b.close();
    });
});

describe('coalesce and reloads', () => {
    let srv;
    let api;

    before(async () => {
        srv = await startServer({ app: { coalesce: RULES } });
        api = sdk(srv);
    });

    after(async () => {
        await srv.stop();
    });

    test('a reload that removes the line: new events go out at once and the older one held is dropped', async () => {
        const ws = await connectRaw(srv);
        await subscribeRaw(ws, 'slow.r');
        await sdkTrigger(api, 'slow.r', 'e', { v: 1 });
        await ws.expectText(eventFrame('e', 'slow.r', { v: 1 }));
        const t2 = Date.now();
        await sdkTrigger(api, 'slow.r', 'e', { v: 2 });      /* held for 3 s */

        srv.rewriteConf({ app: { coalesce: RULES.filter((r) => !r.startsWith('slow.')) } });
        await srv.reload();
        /* the socket stays with its old worker, which reads the ring on */
        await sdkTrigger(api, 'slow.r', 'e', { v: 3 });
        /* 3 at once (the new table), or at the window's end if the new
           workers' HELLO came later; 2 never, before or after it */
        await ws.expectText(eventFrame('e', 'slow.r', { v: 3 }), { timeout: 3500 * SLOW });
        const rest = 3000 + SLACK - (Date.now() - t2);
        await ws.expectNothing(Math.max(rest, 300));

        /* the line is gone: every event at once */
        for (let v = 4; v <= 6; v++) {
            await sdkTrigger(api, 'slow.r', 'e', { v });
        }
        for (let v = 4; v <= 6; v++) {
            await ws.expectText(eventFrame('e', 'slow.r', { v }), { timeout: 1000 });
        }
        await ws.expectNothing(300);
        ws.close();
    });
});

describe('coalesce: nginx -t', () => {
    const MODULE_SO = path.join(BUILD, 'ngx_http_pusher_module.so');
    const NGINX = process.env.PUSHER_NGINX || '/usr/sbin/nginx';

    function nginxT(lines) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pusher-coalesce-'));
        try {
            const conf = path.join(dir, 'nginx.conf');
            fs.writeFileSync(conf, `load_module ${MODULE_SO};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events {}
http {
    access_log off;
    client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
    pusher_app 1 {
        key k;
        secret s;
${lines.map((l) => `        coalesce ${l};\n`).join('')}    }
}
`);
            const r = childProcess.spawnSync(NGINX, ['-t', '-p', dir, '-c', conf], { encoding: 'utf8', env: nginxEnv() });
            return { status: r.status, out: `${r.stdout}${r.stderr}` };
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }

    test('good lines pass', () => {
        const r = nginxT(['private-servers.* 500ms', '* 60s events=a,App\\Events\\Moved', 'x 1ms']);
        assert.equal(r.status, 0, r.out);
    });

    test('bad lines are refused with a clear message', () => {
        const cases = [
            [['p 0ms'], /invalid coalesce window "0ms": a time from 1ms to 60s/],
            [['p 61s'], /invalid coalesce window "61s"/],
            [['p soon'], /invalid coalesce window "soon"/],
            [['a/b 1s'], /invalid coalesce pattern "a\/b"/],
            [[`${'a'.repeat(201)} 1s`], /invalid coalesce pattern/],
            [['p 1s events='], /invalid event name in "events="/],
            [['p 1s events=a,,b'], /invalid event name in "events=a,,b"/],
            [['p 1s names=a'], /invalid coalesce parameter "names=a"/],
            [['p'], /invalid number of arguments in "coalesce"/],
            [[`p 1s events=${Array.from({ length: 33 }, (_, i) => `e${i}`).join(',')}`], /more than 32 event names/],
            [Array.from({ length: 33 }, (_, i) => `p${i} 1s`), /more than 32 "coalesce" lines in pusher app "1"/],
        ];
        for (const [lines, re] of cases) {
            const r = nginxT(lines);
            assert.notEqual(r.status, 0, `accepted: ${lines[0]}`);
            assert.match(r.out, re);
            assert.match(r.out, /\[emerg\]/);
        }
    });
});
