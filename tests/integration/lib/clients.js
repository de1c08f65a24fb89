'use strict';
/*
 * Pusher-level helpers over the harness: raw Pusher sockets, pusher-js
 * clients, the `pusher` server SDK and signed raw API requests.
 */

const assert = require('node:assert/strict');

const PusherJs = require('pusher-js');
const PusherServer = require('pusher');

const { SLOW, httpRequest, sleep, socketWorker, waitUntil } = require('./harness');
const { RawWs, OP } = require('./rawws');
const { signedPath, channelAuth } = require('./sign');

const SOCKET_ID_RE = /^\d+\.\d+$/;

function establishedFrame(socketId, activityTimeout = 30) {
    return JSON.stringify({
        event: 'pusher:connection_established',
        data: JSON.stringify({ socket_id: socketId, activity_timeout: activityTimeout }),
    });
}

function errorFrame(code, message) {
    return JSON.stringify({ event: 'pusher:error', data: JSON.stringify({ code, message }) });
}

function succeededFrame(channel) {
    return JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel, data: '{}' });
}

function eventFrame(event, channel, data) {
    return JSON.stringify({ event, channel, data: typeof data === 'string' ? data : JSON.stringify(data) });
}

const PONG = '{"event":"pusher:pong","data":"{}"}';
const SERVER_PING = '{"event":"pusher:ping","data":"{}"}';

/*
 * Raw WebSocket to /app/{key} that has checked connection_established.
 * Resolves the RawWs with .socketId and .worker (pid part) set.
 */
async function connectRaw(srv, opts = {}) {
    /* opts.key is the app key here, not Sec-WebSocket-Key */
    const { key: appKey, activityTimeout, ...wsOpts } = opts;
    const key = appKey || srv.key;
    const ws = await RawWs.connect(srv.port, `/app/${key}?protocol=7&client=js&version=8.6.0&flash=false`, { tls: srv.tls, ...wsOpts });
    srv.track(ws);
    const f = await ws.next({ what: 'pusher:connection_established' });
    assert.equal(f.opcode, OP.TEXT, `first frame: ${ws.dump()}`);
    const j = JSON.parse(f.text);
    assert.equal(j.event, 'pusher:connection_established', `first frame: ${f.text}`);
    const data = JSON.parse(j.data);
    assert.match(data.socket_id, SOCKET_ID_RE);
    assert.equal(f.text, establishedFrame(data.socket_id, activityTimeout || 30), 'connection_established bytes');
    ws.socketId = data.socket_id;
    ws.worker = socketWorker(data.socket_id);
    return ws;
}

async function subscribeRaw(ws, channel, auth) {
    const data = { auth: auth || '', channel };
    ws.sendJson({ event: 'pusher:subscribe', data });
    await ws.expectText(succeededFrame(channel));
}

/*
 * Open raw Pusher sockets until there are at least n and both nginx workers
 * hold at least one (reuseport spreads connections by 4-tuple hash).
 */
async function connectRawAcrossWorkers(srv, n, opts = {}) {
    const socks = [];
    for (let i = 0; i < 64; i++) {
        socks.push(await connectRaw(srv, opts));
        if (socks.length >= n && new Set(socks.map((s) => s.worker)).size >= 2) {
            return socks;
        }
    }
    throw new Error(`64 connections all landed on worker(s) ${[...new Set(socks.map((s) => s.worker))]}; reuseport not spreading?`);
}

/*
 * n raw Pusher sockets alternating between the two nginx workers:
 * result[i].worker is W0 for even i and W1 for odd i (W0 != W1).  Extra
 * sockets opened to get there are closed.  opts as connectRaw.
 */
async function connectAlternating(srv, n, opts = {}) {
    const buckets = new Map();
    const all = [];
    const need = [Math.ceil(n / 2), Math.floor(n / 2)];
    for (let i = 0; i < 64 + 2 * n; i++) {
        const ws = await connectRaw(srv, opts);
        all.push(ws);
        if (!buckets.has(ws.worker)) {
            buckets.set(ws.worker, []);
        }
        buckets.get(ws.worker).push(ws);
        const bs = [...buckets.values()].sort((a, b) => b.length - a.length);
        if (bs.length >= 2 && bs[0].length >= need[0] && bs[1].length >= need[1]) {
            const out = [];
            for (let k = 0; k < n; k++) {
                out.push(bs[k % 2][k >> 1]);
            }
            for (const w of all) {
                if (!out.includes(w)) {
                    w.close();
                }
            }
            return out;
        }
    }
    throw new Error(`could not get ${n} sockets alternating between 2 workers: ${[...buckets].map(([w, b]) => `${w}:${b.length}`).join(' ')}`);
}

/* ---- presence ---- */

function presenceChannelData(userId, userInfo) {
    const o = { user_id: userId };
    if (userInfo !== undefined) {
        o.user_info = userInfo;
    }
    return JSON.stringify(o);
}

/*
 * Send a presence subscribe for (userId, userInfo) signed for this socket.
 * o: key, secret (default srv's), channelData (raw string override),
 * auth (override).  Returns the channel_data sent.
 */
function sendPresenceSubscribe(srv, ws, channel, userId, userInfo, o = {}) {
    const channelData = o.channelData !== undefined ? o.channelData : presenceChannelData(userId, userInfo);
    const auth = o.auth !== undefined ? o.auth : channelAuth(o.key || srv.key, o.secret || srv.secret, ws.socketId, channel, channelData);
    ws.sendJson({ event: 'pusher:subscribe', data: { auth, channel_data: channelData, channel } });
    return channelData;
}

/*
 * Join a presence channel; the next frame must be subscription_succeeded
 * for it with string data.  Resolves the decoded {count, ids, hash}.
 */
async function joinPresence(srv, ws, channel, userId, userInfo, o = {}) {
    sendPresenceSubscribe(srv, ws, channel, userId, userInfo, o);
    const e = await ws.nextEvent({ what: `subscription_succeeded for ${channel}`, timeout: o.timeout || 3000 });
    if (e.event !== 'pusher_internal:subscription_succeeded' || e.channel !== channel) {
        throw new Error(`${ws.socketId} joining ${channel} as ${JSON.stringify(userId)}: expected subscription_succeeded, got ${e.raw}\nframes:\n${ws.dump()}`);
    }
    assert.equal(typeof e.data, 'string', `subscription_succeeded data must be a JSON string: ${e.raw}`);
    assert.deepEqual(Object.keys(e.dataParsed), ['presence'], e.raw);
    assert.deepEqual(Object.keys(e.dataParsed.presence), ['count', 'ids', 'hash'], e.raw);
    return e.dataParsed.presence;
}

function presenceSucceededFrame(channel, members) {
    /* members: [[id, info], ...] in first-join order */
    const hash = {};
    for (const [id, info] of members) {
        hash[String(id)] = info === undefined ? null : info;
    }
    return JSON.stringify({
        event: 'pusher_internal:subscription_succeeded',
        channel,
        data: JSON.stringify({ presence: { count: members.length, ids: members.map(([id]) => id), hash } }),
    });
}

function memberAddedFrame(channel, userId, userInfo) {
    return JSON.stringify({
        event: 'pusher_internal:member_added',
        channel,
        data: JSON.stringify({ user_id: userId, user_info: userInfo === undefined ? null : userInfo }),
    });
}

function memberRemovedFrame(channel, userId) {
    return JSON.stringify({ event: 'pusher_internal:member_removed', channel, data: JSON.stringify({ user_id: userId }) });
}

function subscriptionErrorFrame(channel, type, error, status) {
    return JSON.stringify({ event: 'pusher:subscription_error', channel, data: JSON.stringify({ type, error, status }) });
}

/*
 * Where pusher-js and laravel-echo connect, as a Laravel app's Echo config
 * sets it from REVERB_HOST/PORT/SCHEME (wss:// to a TLS server)
 */
function wsOptions(srv) {
    return {
        wsHost: '127.0.0.1',
        wsPort: srv.port,
        wssPort: srv.port,
        forceTLS: srv.tls,
        enabledTransports: ['ws', 'wss'],
    };
}

function sdk(srv, overrides = {}) {
    return new PusherServer({
        appId: srv.appId,
        key: srv.key,
        secret: srv.secret,
        host: '127.0.0.1',
        port: String(srv.port),
        useTLS: srv.tls,
        timeout: 5000 * SLOW,
        ...overrides,
    });
}

/* SDK trigger; resolves {status, body} (throws on a non-2xx with details) */
async function sdkTrigger(client, channel, event, data, params) {
    let res;
    try {
        res = await client.trigger(channel, event, data, params);
    } catch (e) {
        const body = e.body !== undefined ? e.body : '';
        throw new Error(`pusher.trigger(${JSON.stringify(channel)}, ${event}) failed: status ${e.status} body ${body} (${e.message})`);
    }
    return { status: res.status, body: await res.text() };
}

/*
 * A pusher-js client.  Resolves when 'connected' unless opts.noWait.
 * c.states collects every state change {previous, current, t}.
 */
async function pusherJs(srv, opts = {}) {
    const { noWait, key, ...rest } = opts;
    const c = new PusherJs(key || srv.key, {
        cluster: '',
        ...wsOptions(srv),
        disableStats: true,
        channelAuthorization: {
            customHandler: (params, cb) => cb(null, { auth: channelAuth(srv.key, srv.secret, params.socketId, params.channelName) }),
        },
        ...rest,
    });
    srv.track(c);
    c.states = [];
    c.connection.bind('state_change', (s) => c.states.push({ ...s, t: Date.now() }));
    c.errors = [];
    c.connection.bind('error', (e) => c.errors.push(e));
    if (!noWait) {
        await waitState(c, 'connected', 5000);
    }
    return c;
}

async function waitState(c, state, ms = 5000) {
    await waitUntil(
        () => c.connection.state === state,
        ms,
        () => `pusher-js state ${state}; states: ${c.states.map((s) => s.current).join(' -> ')}; errors: ${JSON.stringify(c.errors.map((e) => e.error || e))}`,
    );
}

/* subscribe a pusher-js client; resolves the channel when succeeded */
function pjsSubscribe(c, name, ms = 3000) {
    return new Promise((resolve, reject) => {
        const ch = c.subscribe(name);
        const t = setTimeout(() => reject(new Error(`pusher-js subscribe ${name}: no subscription_succeeded in ${ms * SLOW} ms`)), ms * SLOW);
        ch.bind('pusher:subscription_succeeded', () => {
            clearTimeout(t);
            resolve(ch);
        });
        ch.bind('pusher:subscription_error', (e) => {
            clearTimeout(t);
            reject(new Error(`pusher-js subscribe ${name}: subscription_error ${JSON.stringify(e)}`));
        });
    });
}

/*
 * Trigger "probe" events on channel until every socket (subscribed to it)
 * has received one, e.g. while workers re-attach to a restarted broker;
 * then consume everything up to a final "probe-done" on each socket.
 * Resolves {ms, probes}.
 */
async function probeUntilDelivered(api, channel, sockets, ms = 5000) {
    const start = Date.now();
    const deadline = start + ms * SLOW;
    const base = new Map(sockets.map((ws) => [ws, ws.frames.length]));
    const has = (ws) => ws.frames.slice(base.get(ws)).some((f) => f.text && f.text.startsWith('{"event":"probe"'));
    let probes = 0;
    let lastError = '';
    while (!sockets.every(has) && Date.now() < deadline) {
        probes++;
        try {
            await sdkTrigger(api, channel, 'probe', { probes });
        } catch (e) {
            /* the broker may not know the app until a worker re-attached */
            lastError = e.message;
        }
        await sleep(100);
    }
    const missing = sockets.filter((ws) => !has(ws));
    if (missing.length) {
        throw new Error(`after ${ms * SLOW} ms and ${probes} probes (last trigger error: ${lastError || 'none'}), no event reached ${missing.map((w) => w.socketId).join(', ')} of ${sockets.map((w) => w.socketId).join(', ')}\nfirst missing:\n${missing[0].dump()}`);
    }
    const took = Date.now() - start;
    await sdkTrigger(api, channel, 'probe-done', {});
    for (const ws of sockets) {
        await ws.waitEvent('probe-done', channel);
    }
    return { ms: took, probes };
}

/*
 * A signed raw API request through nginx, or with broker: true on the
 * broker's own socket (past the nginx workers, e.g. while one is stopped)
 */
function signedRequest(srv, method, path, { body, params, headers, broker, ...sig } = {}) {
    const p = signedPath({ method, path, body, key: srv.key, secret: srv.secret, params, ...sig });
    const via = broker ? { socketPath: srv.file('api.sock') } : { tls: srv.tls };
    return httpRequest(srv.port, method, p, { body, headers, ...via });
}

/*
 * A laravel-echo client (broadcaster "reverb") on pusher-js that authorizes
 * private channels, and presence channels as userId with info, locally.
 */
let EchoClass = null;

async function echoClient(srv, userId, info) {
    if (EchoClass === null) {
        /* laravel-echo is an ES module package */
        ({ default: EchoClass } = await import('laravel-echo'));
    }
    const e = new EchoClass({
        broadcaster: 'reverb',
        key: srv.key,
        ...wsOptions(srv),
        disableStats: true,
        Pusher: PusherJs,
        channelAuthorization: {
            customHandler: (p, cb) => {
                if (!p.channelName.startsWith('presence-')) {
                    cb(null, { auth: channelAuth(srv.key, srv.secret, p.socketId, p.channelName) });
                    return;
                }
                const cd = presenceChannelData(userId, info);
                cb(null, { auth: channelAuth(srv.key, srv.secret, p.socketId, p.channelName, cd), channel_data: cd });
            },
        },
    });
    srv.track(e.connector.pusher);
    await waitUntil(() => e.connector.pusher.connection.state === 'connected', 5000, 'Echo connected');
    e.worker = Number(e.socketId().split('.')[0]);
    return e;
}

module.exports = {
    echoClient,
    wsOptions,
    SOCKET_ID_RE,
    PONG,
    SERVER_PING,
    establishedFrame,
    errorFrame,
    succeededFrame,
    eventFrame,
    connectRaw,
    subscribeRaw,
    connectRawAcrossWorkers,
    connectAlternating,
    presenceChannelData,
    sendPresenceSubscribe,
    joinPresence,
    presenceSucceededFrame,
    memberAddedFrame,
    memberRemovedFrame,
    subscriptionErrorFrame,
    sdk,
    sdkTrigger,
    pusherJs,
    waitState,
    pjsSubscribe,
    signedRequest,
    channelAuth,
    probeUntilDelivered,
};
