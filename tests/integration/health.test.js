'use strict';
// GET /up tells the truth: 200 only while an nginx worker is attached with
// an accepted app table, so that events can be delivered; otherwise 503
// with a JSON reason.  Asked on the broker's own API socket, where a load
// balancer or systemd's health check would ask it, with nginx stopped and
// started again.

const assert = require('node:assert/strict');
const http = require('node:http');
const { before, after } = require('node:test');

const { startServer, test, waitUntil } = require('./lib/harness');

let srv;

before(async () => {
    srv = await startServer();
});

after(async () => {
    await srv.stop();
});

/* GET /up on the broker's unix socket: {status, body} */
function brokerUp() {
    return new Promise((resolve, reject) => {
        const req = http.request({ socketPath: srv.file('api.sock'), path: '/up', agent: false }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => {
                body += d;
            });
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        req.end();
    });
}

test('/up: 200 while workers are attached, 503 with a reason once nginx is gone, 200 when it is back', async () => {
    assert.deepEqual(await brokerUp(), { status: 200, body: '{"health":"OK"}' });

    await srv.quit();
    /* the workers' links close as they exit */
    const down = await waitUntil(async () => {
        const r = await brokerUp();
        return r.status !== 200 && r;
    }, 5000, '/up still 200 after nginx stopped');
    assert.deepEqual(down, { status: 503, body: '{"health":"DEGRADED","error":"no nginx worker attached"}' });

    srv.nginx.stopping = false;
    await srv.startNginx();
    await srv.waitUp(5000);
    assert.deepEqual(await brokerUp(), { status: 200, body: '{"health":"OK"}' });
});
