'use strict';
// Tests for RFC 6455 framing: close codes for protocol errors, message
// size limits, fragmentation with interleaved control frames, the closing
// handshake and partial reads.

const assert = require('node:assert/strict');
const { before, after, describe } = require('node:test');

const { startServer, test } = require('./lib/harness');
const { OP, buildFrame, closePayload } = require('./lib/rawws');
const { connectRaw, subscribeRaw, eventFrame, sdk, sdkTrigger, PONG } = require('./lib/clients');

const PING_TEXT = '{"event":"pusher:ping","data":{}}';

/* a pusher:ping message of exactly n bytes */
function padPing(n) {
    const head = '{"event":"pusher:ping","data":{"pad":"';
    const tail = '"}}';
    return head + 'p'.repeat(n - head.length - tail.length) + tail;
}

describe('default limits (max_message_size 10000)', () => {
    let srv;

    before(async () => {
        srv = await startServer();
    });

    after(async () => {
        await srv.stop();
    });

    async function expectProtocolClose(ws, code) {
        const f = await ws.next({ skip: true, pred: (x) => x.opcode === OP.CLOSE, what: `close ${code}` });
        assert.equal(f.code, code, `close code: ${ws.dump()}`);
        await ws.expectTcpClose();
    }

    test('an unmasked client frame -> close 1002', async () => {
        const ws = await connectRaw(srv);
        ws.write(buildFrame(OP.TEXT, PING_TEXT, { mask: false }));
        await expectProtocolClose(ws, 1002);
        assert.ok(!ws.frames.some((f) => f.text === PONG), `the unmasked frame was processed: ${ws.dump()}`);
    });

    for (const rsv of [1, 2, 4]) {
        test(`RSV bits ${rsv.toString(2).padStart(3, '0')} set (no extension negotiated) -> close 1002`, async () => {
            const ws = await connectRaw(srv);
            ws.write(buildFrame(OP.TEXT, PING_TEXT, { rsv }));
            await expectProtocolClose(ws, 1002);
        });
    }

    for (const op of [3, 7, 0xb, 0xf]) {
        test(`reserved opcode 0x${op.toString(16)} -> close 1002`, async () => {
            const ws = await connectRaw(srv);
            ws.write(buildFrame(op, 'x'));
            await expectProtocolClose(ws, 1002);
        });
    }

    test('a continuation frame with no message started -> close 1002', async () => {
        const ws = await connectRaw(srv);
        ws.write(buildFrame(OP.CONT, PING_TEXT));
        await expectProtocolClose(ws, 1002);
    });

    test('a new text frame while a fragmented message is open -> close 1002', async () => {
        const ws = await connectRaw(srv);
        ws.write(buildFrame(OP.TEXT, '{"event":', { fin: false }));
        ws.write(buildFrame(OP.TEXT, PING_TEXT));
        await expectProtocolClose(ws, 1002);
    });

    test('a fragmented control frame -> close 1002', async () => {
        const ws = await connectRaw(srv);
        ws.write(buildFrame(OP.PING, 'abc', { fin: false }));
        await expectProtocolClose(ws, 1002);
    });

    test('a control frame with a 126-byte payload -> close 1002', async () => {
        const ws = await connectRaw(srv);
        ws.write(buildFrame(OP.PING, Buffer.alloc(126, 0x61)));
        await expectProtocolClose(ws, 1002);
    });

    for (const [name, bytes] of [
        ['a lone continuation byte', [0x80]],
        ['a truncated 2-byte sequence', [0x7b, 0xc3]],
        ['an overlong encoding of "/"', [0xc0, 0xaf]],
        ['a UTF-16 surrogate (ED A0 80)', [0xed, 0xa0, 0x80]],
        ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
        ['byte 0xFF', [0xff]],
    ]) {
        test(`invalid UTF-8 in a text frame (${name}) -> close 1007`, async () => {
            const ws = await connectRaw(srv);
            ws.send(OP.TEXT, Buffer.concat([Buffer.from('{"event":"pusher:ping","data":"'), Buffer.from(bytes), Buffer.from('"}')]));
            await expectProtocolClose(ws, 1007);
        });
    }

    test('invalid UTF-8 split across fragments -> close 1007; valid UTF-8 split mid-character is fine', async () => {
        const ok = await connectRaw(srv);
        const euro = Buffer.from('{"event":"pusher:ping","data":{"x":"\u20ac"}}');
        const cut = euro.indexOf(0xe2) + 1;
        ok.send(OP.TEXT, euro.subarray(0, cut), { fin: false });
        ok.send(OP.CONT, euro.subarray(cut));
        await ok.expectText(PONG);
        ok.close();

        const bad = await connectRaw(srv);
        bad.send(OP.TEXT, Buffer.from([0x7b, 0xe2, 0x82]), { fin: false });
        bad.send(OP.CONT, Buffer.from([0x41, 0x7d]));
        await expectProtocolClose(bad, 1007);
    });

    test('a close frame with invalid UTF-8 in the reason, or a 1-byte payload -> close 1002 or 1007', async () => {
        const a = await connectRaw(srv);
        a.send(OP.CLOSE, Buffer.concat([closePayload(1000), Buffer.from([0xff])]));
        const fa = await a.next({ skip: true, pred: (x) => x.opcode === OP.CLOSE });
        assert.ok([1002, 1007].includes(fa.code), a.dump());
        await a.expectTcpClose();
        const b = await connectRaw(srv);
        b.send(OP.CLOSE, Buffer.from([0x03]));
        const fb = await b.next({ skip: true, pred: (x) => x.opcode === OP.CLOSE });
        assert.equal(fb.code, 1002, b.dump());
        await b.expectTcpClose();
    });

    test('close codes that must not appear on the wire (1005, 1006, 999) -> close 1002', async () => {
        for (const code of [1005, 1006, 999]) {
            const ws = await connectRaw(srv);
            ws.sendClose(code);
            await expectProtocolClose(ws, 1002);
        }
    });

    test('a message of exactly 10000 bytes is processed; 10001 bytes -> close 1009', async () => {
        const pad = padPing;
        const ok = await connectRaw(srv);
        ok.sendText(pad(10000));
        await ok.expectText(PONG);
        /* the same size in 3 fragments */
        const m = Buffer.from(pad(10000));
        ok.send(OP.TEXT, m.subarray(0, 4000), { fin: false });
        ok.send(OP.CONT, m.subarray(4000, 8000), { fin: false });
        ok.send(OP.CONT, m.subarray(8000));
        await ok.expectText(PONG);
        ok.close();

        const big = await connectRaw(srv);
        big.sendText(pad(10001));
        await expectProtocolClose(big, 1009);

        const frag = await connectRaw(srv);
        const m2 = Buffer.from(pad(10001));
        frag.send(OP.TEXT, m2.subarray(0, 6000), { fin: false });
        frag.send(OP.CONT, m2.subarray(6000));
        await expectProtocolClose(frag, 1009);
    });

    test('a frame header announcing 2^62 bytes -> close 1009 at once (nothing buffered)', async () => {
        const ws = await connectRaw(srv);
        ws.write(buildFrame(OP.TEXT, Buffer.alloc(0), { length: 2 ** 62 }).subarray(0, 14));
        await expectProtocolClose(ws, 1009);
    });

    test('a 64-bit length with the most significant bit set -> close 1002 (or 1009)', async () => {
        const ws = await connectRaw(srv);
        const h = Buffer.from([0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
        ws.write(h);
        const f = await ws.next({ skip: true, pred: (x) => x.opcode === OP.CLOSE });
        assert.ok([1002, 1009].includes(f.code), ws.dump());
        await ws.expectTcpClose();
    });

    test('a 3-fragment text message with a ping interleaved: the pong comes first, then the message is processed', async () => {
        const ws = await connectRaw(srv);
        ws.send(OP.TEXT, '{"event":"pus', { fin: false });
        ws.send(OP.CONT, 'her:ping","da', { fin: false });
        ws.send(OP.PING, 'mid');
        ws.send(OP.CONT, 'ta":{}}');
        const p = await ws.next();
        assert.equal(p.opcode, OP.PONG, ws.dump());
        assert.equal(p.payload.toString(), 'mid');
        await ws.expectText(PONG);
        ws.close();
    });

    test('fragments with empty payloads are fine', async () => {
        const ws = await connectRaw(srv);
        ws.send(OP.TEXT, '', { fin: false });
        ws.send(OP.CONT, PING_TEXT, { fin: false });
        ws.send(OP.CONT, '');
        await ws.expectText(PONG);
        ws.close();
    });

    test('frames written one byte at a time (every split point) are parsed', async () => {
        const ws = await connectRaw(srv);
        const frames = Buffer.concat([
            buildFrame(OP.TEXT, PING_TEXT),
            buildFrame(OP.PING, 'split'),
            buildFrame(OP.TEXT, `{"event":"pusher:ping","data":{"pad":"${'x'.repeat(300)}"}}`),
        ]);
        await ws.writeSplit(frames, 1);
        await ws.expectText(PONG);
        const p = await ws.next();
        assert.equal(p.opcode, OP.PONG);
        assert.equal(p.payload.toString(), 'split');
        await ws.expectText(PONG);
        ws.close();
    });

    test('100 pings of both kinds in one write: each kind answered in order, the latest ping\'s payload last, one waiting reply of a kind at most', async () => {
        const ws = await connectRaw(srv);
        const parts = [];
        for (let i = 0; i < 100; i++) {
            parts.push(i % 2 ? buildFrame(OP.PING, String(i)) : buildFrame(OP.TEXT, PING_TEXT));
        }
        ws.write(Buffer.concat(parts));
        /*
         * RFC 6455 5.5.3: a pong may answer only the latest ping; replies
         * that wait are not stacked up.  Control frames may overtake
         * queued data frames; each kind stays in order.
         */
        const pongs = [];
        let texts = 0;
        while (pongs[pongs.length - 1] !== 99) {
            const f = await ws.next();
            if (f.opcode === OP.PONG) {
                pongs.push(Number(f.payload.toString()));
            } else {
                assert.equal(f.text, PONG, ws.dump());
                texts++;
            }
        }
        assert.deepEqual(pongs, [...pongs].sort((a, b) => a - b), ws.dump());
        assert.ok(pongs.every((n) => n % 2 === 1), ws.dump());
        if (texts === 0) {
            await ws.expectText(PONG);
        }
        await ws.expectNothing(100);
        ws.close();
    });

    test('1 MB of subscribes in one write (past the per-turn read budget): all 1,000 answered in order', async () => {
        const ws = await connectRaw(srv);
        const pad = 'p'.repeat(1000);
        ws.write(Buffer.concat(Array.from({ length: 1000 }, (_, i) => buildFrame(OP.TEXT,
            JSON.stringify({ event: 'pusher:subscribe', data: { auth: '', channel: `budget-${i}`, pad } })))));
        for (let i = 0; i < 1000; i++) {
            await ws.expectText(JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel: `budget-${i}`, data: '{}' }), { timeout: 10000 });
        }
        ws.close();
    });

    test('client close 1000 -> server close 1000, then TCP closed', async () => {
        const ws = await connectRaw(srv);
        ws.sendClose(1000, 'bye');
        await ws.expectClose(1000);
        await ws.expectTcpClose();
        /* connection_established, then only the close frame */
        assert.equal(ws.frames.length, 2, ws.dump());
    });

    test('client close without a code -> server close (1000 or empty), then TCP closed', async () => {
        const ws = await connectRaw(srv);
        ws.sendClose();
        const f = await ws.next();
        assert.equal(f.opcode, OP.CLOSE, ws.dump());
        assert.ok(f.code === undefined || f.code === 1000, ws.dump());
        await ws.expectTcpClose();
    });

    test('client close 4000 (application range) -> server closes too', async () => {
        const ws = await connectRaw(srv);
        ws.sendClose(4000, 'app');
        const f = await ws.next();
        assert.equal(f.opcode, OP.CLOSE, ws.dump());
        await ws.expectTcpClose();
    });

    test('frames after the client close frame are ignored', async () => {
        const ws = await connectRaw(srv);
        ws.write(Buffer.concat([buildFrame(OP.CLOSE, closePayload(1000)), buildFrame(OP.TEXT, PING_TEXT)]));
        await ws.expectClose(1000);
        await ws.expectTcpClose();
        assert.ok(!ws.frames.some((f) => f.text === PONG), ws.dump());
    });

    test('a client that vanishes (TCP reset) while subscribed does not disturb others', async () => {
        const api = sdk(srv);
        const keep = await connectRaw(srv);
        await subscribeRaw(keep, 'vanish');
        for (let i = 0; i < 10; i++) {
            const ws = await connectRaw(srv);
            await subscribeRaw(ws, 'vanish');
            ws.reset();
        }
        await sdkTrigger(api, 'vanish', 'v', { ok: true });
        await keep.expectText(eventFrame('v', 'vanish', { ok: true }));
        keep.close();
    });
});

describe('max_message_size 64', () => {
    let srv;

    before(async () => {
        srv = await startServer({ app: { max_message_size: '64' } });
    });

    after(async () => {
        await srv.stop();
    });

    test('a 64-byte message is processed; a 65-byte text message -> close 1009', async () => {
        const ok = await connectRaw(srv);
        const m64 = padPing(64);
        assert.equal(Buffer.byteLength(m64), 64);
        ok.sendText(m64);
        await ok.expectText(PONG);
        ok.close();

        const ws = await connectRaw(srv);
        ws.sendText(`${m64} `);
        const f = await ws.next();
        assert.equal(f.opcode, OP.CLOSE, ws.dump());
        assert.equal(f.code, 1009, ws.dump());
        await ws.expectTcpClose();
    });

    test('a fragmented message that grows past 64 bytes -> close 1009', async () => {
        const ws = await connectRaw(srv);
        for (let i = 0; i < 3; i++) {
            ws.send(i === 0 ? OP.TEXT : OP.CONT, 'x'.repeat(30), { fin: i === 2 });
        }
        const f = await ws.next();
        assert.equal(f.opcode, OP.CLOSE, ws.dump());
        assert.equal(f.code, 1009, ws.dump());
        await ws.expectTcpClose();
    });

    test('control frames are not limited by max_message_size (125-byte ping is answered)', async () => {
        const ws = await connectRaw(srv);
        ws.send(OP.PING, Buffer.alloc(125, 0x62));
        const f = await ws.next();
        assert.equal(f.opcode, OP.PONG, ws.dump());
        assert.equal(f.payload.length, 125);
        ws.close();
    });
});
