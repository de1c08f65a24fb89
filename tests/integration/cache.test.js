'use strict';
// Cache channels (cache-, private-cache-, presence-cache-): the last
// HTTP-triggered event is kept by the broker for cache_ttl whether or not
// anyone is subscribed, and replayed right after subscription_succeeded;
// otherwise pusher:cache_miss.

const assert = require('node:assert/strict');
const { before, after, describe } = require('node:test');

const { startServer, test, sleep } = require('./lib/harness');
const { connectRaw, sdk, channelAuth, succeededFrame } = require('./lib/clients');

async function nextText(ws, timeout = 3000) {
    const f = await ws.next({ timeout, what: 'a text frame' });
    assert.equal(f.opcode, 1, ws.dump());
    return f.text;
}

function missFrame(channel) {
    return JSON.stringify({ event: 'pusher:cache_miss', channel });
}

describe('cache channels', () => {
    let srv;
    let api;

    before(async () => {
        srv = await startServer({ app: { cache_ttl: '2s' } });
        api = sdk(srv);
    });

    after(async () => {
        await srv.stop();
    });

    test('a cache channel with no event yet: subscription_succeeded then pusher:cache_miss', async () => {
        const ws = await connectRaw(srv);
        ws.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-empty"}}');
        assert.equal(await nextText(ws), succeededFrame('cache-empty'));
        assert.equal(await nextText(ws), missFrame('cache-empty'));
        ws.close();
    });

    test('the last event, triggered while nobody was subscribed, is replayed to new subscribers on both workers', async () => {
        await api.trigger('cache-news', 'headline', { n: 1 });
        await api.trigger('cache-news', 'headline', { n: 2 });
        await sleep(100);
        const expect = JSON.stringify({ event: 'headline', channel: 'cache-news', data: JSON.stringify({ n: 2 }) });
        const workers = new Set();
        for (let i = 0; i < 6; i++) {
            const ws = await connectRaw(srv);
            workers.add(ws.worker);
            ws.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-news"}}');
            assert.equal(await nextText(ws), succeededFrame('cache-news'));
            assert.equal(await nextText(ws), expect);
            ws.close();
        }
        if (workers.size < 2) {
            console.log('note: all subscribers landed on one worker');
        }
    });

    test('private-cache- channels need auth and are cached too', async () => {
        await api.trigger('private-cache-acct', 'balance', { v: 7 });
        await sleep(100);
        const ws = await connectRaw(srv);
        ws.sendText(JSON.stringify({
            event: 'pusher:subscribe',
            data: { auth: channelAuth(srv.key, srv.secret, ws.socketId, 'private-cache-acct'), channel: 'private-cache-acct' },
        }));
        assert.equal(await nextText(ws), succeededFrame('private-cache-acct'));
        assert.equal(await nextText(ws), JSON.stringify({ event: 'balance', channel: 'private-cache-acct', data: JSON.stringify({ v: 7 }) }));
        ws.close();
    });

    test('a public channel without the cache- prefix gets no cache frame', async () => {
        await api.trigger('plain', 'e', { v: 1 });
        await sleep(100);
        const ws = await connectRaw(srv);
        ws.sendText('{"event":"pusher:subscribe","data":{"channel":"plain"}}');
        assert.equal(await nextText(ws), succeededFrame('plain'));
        await ws.expectNothing(300);
        ws.close();
    });

    test('the cached event expires after cache_ttl', async () => {
        await api.trigger('cache-short', 'e', { v: 1 });
        await sleep(2300);
        const ws = await connectRaw(srv);
        ws.sendText('{"event":"pusher:subscribe","data":{"channel":"cache-short"}}');
        assert.equal(await nextText(ws), succeededFrame('cache-short'));
        assert.equal(await nextText(ws), missFrame('cache-short'));
        ws.close();
    });
});
