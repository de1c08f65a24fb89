'use strict';
/*
 * tests/package/deliver.js PORT APP_ID KEY SECRET: one event from the
 * `pusher` server SDK (HTTP API through nginx to pusher-broker) to a
 * pusher-js client (WebSocket on nginx's worker), on 127.0.0.1:PORT.
 * Waits for GET /up to answer 200 first (broker up, a worker attached).
 * Exits 0 when the client received exactly the data sent, else prints what
 * happened and exits 1.  Needs NODE_PATH with pusher and pusher-js
 * (tests/integration/node_modules).
 */
const assert = require('node:assert/strict');
const http = require('node:http');
const PusherJs = require('pusher-js');
const PusherServer = require('pusher');

const [port, appId, key, secret] = process.argv.slice(2);
if (!secret) {
    console.error('usage: deliver.js PORT APP_ID KEY SECRET');
    process.exit(2);
}
const host = '127.0.0.1';
const channel = 'package-test';
const event = 'delivered';
const data = { message: 'from the pusher SDK to pusher-js', n: 42, list: ['a', 'b'], unicode: 'Grüße ✓' };

function get(path) {
    return new Promise((resolve) => {
        const req = http.get({ host, port, path, timeout: 1000 }, (res) => {
            let body = '';
            res.on('data', (c) => { body += c; });
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (e) => resolve({ status: 0, body: e.message }));
    });
}

function withTimeout(promise, ms, what) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

async function main() {
    let up;
    for (let i = 0; i < 150; i++) {
        up = await get('/up');
        if (up.status === 200) break;
        await new Promise((r) => setTimeout(r, 200));
    }
    console.log(`GET /up: ${up.status} ${up.body}`);
    assert.equal(up.status, 200, 'GET /up through nginx: the broker runs and a worker is attached');

    const client = new PusherJs(key, {
        cluster: '',
        wsHost: host,
        wsPort: Number(port),
        forceTLS: false,
        enabledTransports: ['ws'],
        disableStats: true,
    });
    try {
        await withTimeout(new Promise((resolve, reject) => {
            client.connection.bind('connected', resolve);
            client.connection.bind('error', (e) => reject(new Error(`pusher-js: ${JSON.stringify(e)}`)));
        }), 10000, 'pusher-js connect');
        console.log(`pusher-js connected: socket_id ${client.connection.socket_id}`);

        const ch = client.subscribe(channel);
        await withTimeout(new Promise((resolve, reject) => {
            ch.bind('pusher:subscription_succeeded', resolve);
            ch.bind('pusher:subscription_error', (e) => reject(new Error(`subscription_error ${JSON.stringify(e)}`)));
        }), 10000, `subscribe ${channel}`);
        console.log(`pusher-js subscribed to ${channel}`);

        const received = new Promise((resolve) => ch.bind(event, resolve));

        const sdk = new PusherServer({ appId, key, secret, host, port: String(port), useTLS: false, timeout: 10000 });
        let res;
        try {
            res = await sdk.trigger(channel, event, data);
        } catch (e) {
            throw new Error(`pusher.trigger failed: status ${e.status} body ${e.body} (${e.message})`);
        }
        const body = await res.text();
        console.log(`pusher SDK trigger: ${res.status} ${body}`);
        assert.equal(res.status, 200);

        const got = await withTimeout(received, 10000, `event ${event} on ${channel}`);
        console.log(`pusher-js received ${event}: ${JSON.stringify(got)}`);
        assert.deepEqual(got, data);
        console.log('delivered: the data arrived unchanged');
    } finally {
        client.disconnect();
    }
}

main().then(() => process.exit(0), (e) => {
    console.error(`deliver.js: FAILED: ${e.message}`);
    process.exit(1);
});
