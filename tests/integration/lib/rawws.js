'use strict';
/*
 * A raw RFC 6455 client over node:net, for byte-exact tests.  It writes
 * the handshake and every frame itself (any opcode, fin, rsv, mask, split
 * writes) and parses what the server sends.
 *
 *   const ws = await RawWs.connect(port, '/app/key');     // 101 or throws
 *   ws.sendJson({ event: 'pusher:ping', data: {} });
 *   assert.equal((await ws.next()).text, '{"event":"pusher:pong","data":"{}"}');
 *
 * Received frames are kept in ws.frames ({opcode, fin, rsv, masked,
 * payload, text, code, reason}); next() hands them out in order.  A server
 * frame that is masked, or bytes that do not parse, are recorded in
 * ws.violations and make next() throw.
 */

const crypto = require('node:crypto');
const net = require('node:net');
const tls = require('node:tls');

const { SLOW, TLS } = require('./harness');

/*
 * A TCP connection to nginx, or under PUSHER_TLS=1 (or with useTls) a TLS
 * one that offers HTTP/1.1 only, as browsers do for WebSockets
 */
function connectSocket(port, useTls = TLS) {
    const tcp = net.connect({ host: '127.0.0.1', port });
    if (!useTls) {
        return tcp;
    }
    const sock = tls.connect({ socket: tcp, host: '127.0.0.1', ALPNProtocols: ['http/1.1'] });
    /* for reset(): a TLS socket cannot send an RST, its TCP socket can */
    sock.tcp = tcp;
    return sock;
}

const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };
const OP_NAME = { 0: 'cont', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' };
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function acceptFor(key) {
    return crypto.createHash('sha1').update(key + GUID).digest('base64');
}

/*
 * Build one client frame.  payload: Buffer|string.  opts: fin (true),
 * rsv (0..7, the three RSV bits), mask (true), maskKey (random 4 bytes),
 * length (override the encoded payload length: lie to the server).
 */
function buildFrame(opcode, payload = Buffer.alloc(0), opts = {}) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const fin = opts.fin === undefined ? true : opts.fin;
    const mask = opts.mask === undefined ? true : opts.mask;
    const rsv = opts.rsv || 0;
    const len = opts.length === undefined ? data.length : opts.length;
    const head = [((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f))];
    let ext;
    if (len < 126) {
        head.push((mask ? 0x80 : 0) | len);
        ext = Buffer.alloc(0);
    } else if (len < 65536) {
        head.push((mask ? 0x80 : 0) | 126);
        ext = Buffer.alloc(2);
        ext.writeUInt16BE(len);
    } else {
        head.push((mask ? 0x80 : 0) | 127);
        ext = Buffer.alloc(8);
        ext.writeBigUInt64BE(BigInt(len));
    }
    if (!mask) {
        return Buffer.concat([Buffer.from(head), ext, data]);
    }
    const key = opts.maskKey || crypto.randomBytes(4);
    const body = Buffer.alloc(data.length);
    for (let i = 0; i < data.length; i++) {
        body[i] = data[i] ^ key[i & 3];
    }
    return Buffer.concat([Buffer.from(head), ext, key, body]);
}

function closePayload(code, reason = '') {
    if (code === undefined) {
        return Buffer.alloc(0);
    }
    const b = Buffer.alloc(2);
    b.writeUInt16BE(code);
    return Buffer.concat([b, Buffer.from(reason)]);
}

function describeFrame(f) {
    if (f.opcode === OP.CLOSE) {
        return `close(${f.code === undefined ? '-' : f.code}${f.reason ? ` "${f.reason}"` : ''})`;
    }
    const name = OP_NAME[f.opcode] || `op${f.opcode}`;
    const body = f.opcode === OP.TEXT ? f.text : f.payload.toString('hex');
    return `${name}${f.fin ? '' : '(fin=0)'}${f.rsv ? `(rsv=${f.rsv})` : ''}${f.masked ? '(MASKED)' : ''}: ${body.length > 300 ? `${body.slice(0, 300)}...(${body.length})` : body}`;
}

function parseHttpHead(buf) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
        return null;
    }
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const statusLine = lines.shift();
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
    const headers = {};
    const rawHeaders = [];
    for (const l of lines) {
        const i = l.indexOf(':');
        const name = l.slice(0, i).trim().toLowerCase();
        const value = l.slice(i + 1).trim();
        rawHeaders.push([name, value]);
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    return { statusLine, status: m ? Number(m[1]) : NaN, headers, rawHeaders, headLength: end + 4 };
}

class RawWs {
    constructor(sock) {
        this.sock = sock;
        this.buf = Buffer.alloc(0);
        this.frames = [];
        this.cursor = 0;
        this.violations = [];
        this.ended = false;
        this.waiters = [];
        this.fragments = null;
        this.closeFrame = null;
        this.tcpClosed = new Promise((resolve) => {
            sock.on('close', () => {
                this.ended = true;
                this.wake();
                resolve();
            });
        });
        sock.on('error', (e) => {
            this.socketError = e;
        });
    }

    /*
     * Open a WebSocket.  opts: headers (extra/override, null value drops a
     * default header), key, extra (Buffer written in the same write as the
     * handshake), allowFail (a non-101 answer resolves {response} instead
     * of throwing), splitHandshake (write it one byte at a time), gate (a
     * promise: connect TCP now, write the handshake once it resolves),
     * tls (default: PUSHER_TLS=1).
     */
    static connect(port, urlPath, opts = {}) {
        const key = opts.key || crypto.randomBytes(16).toString('base64');
        const hdrs = {
            Host: `127.0.0.1:${port}`,
            Upgrade: 'websocket',
            Connection: 'Upgrade',
            'Sec-WebSocket-Key': key,
            'Sec-WebSocket-Version': '13',
            ...(opts.headers || {}),
        };
        const method = opts.method || 'GET';
        let req = `${method} ${urlPath} HTTP/1.1\r\n`;
        for (const [k, v] of Object.entries(hdrs)) {
            if (v !== null && v !== undefined) {
                req += `${k}: ${v}\r\n`;
            }
        }
        req += '\r\n';
        const request = Buffer.concat([Buffer.from(req, 'latin1'), opts.extra || Buffer.alloc(0)]);
        const timeout = (opts.timeout || 5000) * SLOW;

        return new Promise((resolve, reject) => {
            const sock = connectSocket(port, opts.tls === undefined ? TLS : opts.tls);
            sock.setNoDelay(true);
            let head = Buffer.alloc(0);
            let response = null;
            const onTimeout = () => {
                sock.destroy();
                reject(new Error(`handshake to ${urlPath}: no complete response in ${timeout} ms; got ${JSON.stringify(head.toString('latin1'))}`));
            };
            let timer = opts.gate ? null : setTimeout(onTimeout, timeout);
            const finishNon101 = () => {
                clearTimeout(timer);
                sock.destroy();
                response.body = head.subarray(response.headLength).toString('utf8');
                if (opts.allowFail) {
                    resolve({ response });
                } else {
                    reject(new Error(`handshake to ${urlPath}: expected 101, got ${response.statusLine}\n${response.body.slice(0, 500)}`));
                }
            };
            const onData = (chunk) => {
                head = Buffer.concat([head, chunk]);
                if (!response) {
                    response = parseHttpHead(head);
                    if (!response) {
                        return;
                    }
                }
                if (response.status === 101) {
                    clearTimeout(timer);
                    sock.removeListener('data', onData);
                    sock.removeListener('end', onEnd);
                    const ws = new RawWs(sock);
                    ws.response = response;
                    ws.key = key;
                    ws.expectedAccept = acceptFor(key);
                    sock.on('data', (c) => ws.onData(c));
                    const rest = head.subarray(response.headLength);
                    if (rest.length) {
                        ws.onData(rest);
                    }
                    resolve(ws);
                    return;
                }
                const cl = Number(response.headers['content-length']);
                if (!Number.isNaN(cl) && head.length - response.headLength >= cl) {
                    finishNon101();
                }
            };
            const onEnd = () => {
                if (response && response.status !== 101) {
                    finishNon101();
                } else {
                    clearTimeout(timer);
                    reject(new Error(`handshake to ${urlPath}: connection closed; got ${JSON.stringify(head.toString('latin1'))}`));
                }
            };
            sock.on('data', onData);
            sock.on('end', onEnd);
            sock.on('error', (e) => {
                clearTimeout(timer);
                reject(e);
            });
            if (opts.gate) {
                /* connect now, send the handshake when the gate opens */
                Promise.resolve(opts.gate).then(() => {
                    clearTimeout(timer);
                    timer = setTimeout(onTimeout, timeout);
                    sock.write(request);
                });
            } else if (opts.splitHandshake) {
                /* one byte per write */
                (async () => {
                    for (let i = 0; i < request.length; i++) {
                        sock.write(request.subarray(i, i + 1));
                        await new Promise((r) => setImmediate(r));
                    }
                })();
            } else {
                sock.write(request);
            }
        });
    }

    onData(chunk) {
        this.buf = Buffer.concat([this.buf, chunk]);
        for (;;) {
            const b = this.buf;
            if (b.length < 2) {
                break;
            }
            const fin = (b[0] & 0x80) !== 0;
            const rsv = (b[0] >> 4) & 7;
            const opcode = b[0] & 0x0f;
            const masked = (b[1] & 0x80) !== 0;
            let len = b[1] & 0x7f;
            let off = 2;
            if (len === 126) {
                if (b.length < 4) {
                    break;
                }
                len = b.readUInt16BE(2);
                off = 4;
            } else if (len === 127) {
                if (b.length < 10) {
                    break;
                }
                len = Number(b.readBigUInt64BE(2));
                off = 10;
            }
            if (masked) {
                off += 4;
            }
            if (b.length < off + len) {
                break;
            }
            let payload = Buffer.from(b.subarray(off, off + len));
            if (masked) {
                const key = b.subarray(off - 4, off);
                for (let i = 0; i < payload.length; i++) {
                    payload[i] ^= key[i & 3];
                }
                this.violations.push(`server sent a masked frame (opcode ${opcode})`);
            }
            if (rsv) {
                this.violations.push(`server frame with RSV bits ${rsv}`);
            }
            this.buf = b.subarray(off + len);
            const f = { opcode, fin, rsv, masked, payload };
            if (opcode === OP.TEXT) {
                f.text = payload.toString('utf8');
            }
            if (opcode === OP.CLOSE) {
                if (payload.length >= 2) {
                    f.code = payload.readUInt16BE(0);
                    f.reason = payload.subarray(2).toString('utf8');
                } else if (payload.length === 1) {
                    this.violations.push('close frame with a 1-byte payload');
                }
                if (this.closeFrame) {
                    this.violations.push('second close frame from the server');
                } else {
                    this.closeFrame = f;
                }
            } else if (this.closeFrame) {
                this.violations.push(`server sent ${describeFrame(f)} after its close frame`);
            }
            if (opcode >= 8 && (!fin || len > 125)) {
                this.violations.push(`invalid control frame from the server: ${describeFrame(f)}`);
            }
            this.frames.push(f);
        }
        this.wake();
    }

    wake() {
        const w = this.waiters;
        this.waiters = [];
        for (const fn of w) {
            fn();
        }
    }

    changed(ms) {
        return new Promise((resolve) => {
            const t = setTimeout(resolve, ms);
            this.waiters.push(() => {
                clearTimeout(t);
                resolve();
            });
        });
    }

    /* all frames received so far, one per line, for failure messages */
    dump() {
        const lines = this.frames.map((f, i) => `  ${i === this.cursor ? '>' : ' '}${i}: ${describeFrame(f)}`);
        if (this.cursor === this.frames.length) {
            lines.push('  > (waiting here)');
        }
        if (this.ended) {
            lines.push('  [TCP closed]');
        }
        if (this.violations.length) {
            lines.push(`  violations: ${this.violations.join('; ')}`);
        }
        return lines.join('\n');
    }

    checkViolations() {
        if (this.violations.length) {
            throw new Error(`server WebSocket protocol violation: ${this.violations.join('; ')}\nframes:\n${this.dump()}`);
        }
    }

    /*
     * The next frame after the cursor that satisfies pred (skipping the
     * others when skip is true); throws with the frame dump on timeout.
     */
    async next(opts = {}) {
        const { timeout = 3000, pred = null, skip = false, what = 'a frame' } = opts;
        const deadline = Date.now() + timeout * SLOW;
        for (;;) {
            this.checkViolations();
            while (this.cursor < this.frames.length) {
                const f = this.frames[this.cursor++];
                if (!pred || pred(f)) {
                    return f;
                }
                if (!skip) {
                    throw new Error(`expected ${what}, got ${describeFrame(f)}\nframes:\n${this.dump()}`);
                }
            }
            const left = deadline - Date.now();
            if (this.ended) {
                throw new Error(`expected ${what}, but the TCP connection closed\nframes:\n${this.dump()}`);
            }
            if (left <= 0) {
                throw new Error(`expected ${what} within ${timeout * SLOW} ms, got nothing\nframes:\n${this.dump()}`);
            }
            await this.changed(left);
        }
    }

    /* the next frame must be a text frame with exactly this text */
    async expectText(text, opts = {}) {
        const f = await this.next({ ...opts, what: `text ${text}` });
        if (f.opcode !== OP.TEXT || f.text !== text || !f.fin) {
            throw new Error(`expected text frame\n    ${text}\ngot\n    ${describeFrame(f)}\nframes:\n${this.dump()}`);
        }
        return f;
    }

    /* the next text frame parsed as JSON (data decoded too when a JSON string) */
    async nextEvent(opts = {}) {
        const f = await this.next({ ...opts, what: opts.what || 'a text frame' });
        if (f.opcode !== OP.TEXT) {
            throw new Error(`expected a text frame, got ${describeFrame(f)}\nframes:\n${this.dump()}`);
        }
        return parseEvent(f.text, this);
    }

    /* skip frames until a text frame with this event (and channel) arrives */
    async waitEvent(event, channel, opts = {}) {
        const f = await this.next({
            timeout: 3000,
            ...opts,
            skip: true,
            what: `event ${event}${channel ? ` on ${channel}` : ''}`,
            pred: (x) => {
                if (x.opcode !== OP.TEXT) {
                    return false;
                }
                try {
                    const j = JSON.parse(x.text);
                    return j.event === event && (channel === undefined || j.channel === channel);
                } catch {
                    return false;
                }
            },
        });
        return parseEvent(f.text, this);
    }

    /* no new frame within ms */
    async expectNothing(ms = 300) {
        const start = this.frames.length;
        const deadline = Date.now() + ms;
        while (Date.now() < deadline && this.frames.length === start && !this.ended) {
            await this.changed(deadline - Date.now());
        }
        this.checkViolations();
        if (this.frames.length !== start) {
            throw new Error(`expected no frame within ${ms} ms, got ${describeFrame(this.frames[start])}\nframes:\n${this.dump()}`);
        }
    }

    /* the next frame must be a close frame with this code (and reason) */
    async expectClose(code, reason, opts = {}) {
        const f = await this.next({ ...opts, what: `close frame ${code}` });
        if (f.opcode !== OP.CLOSE || f.code !== code || (reason !== undefined && f.reason !== reason)) {
            throw new Error(`expected close(${code}${reason !== undefined ? ` "${reason}"` : ''}), got ${describeFrame(f)}\nframes:\n${this.dump()}`);
        }
        return f;
    }

    /* resolves when the server closed TCP; throws after ms */
    async expectTcpClose(ms = 3000) {
        const r = await Promise.race([this.tcpClosed.then(() => true), new Promise((res) => setTimeout(() => res(false), ms * SLOW))]);
        if (!r) {
            throw new Error(`server did not close the TCP connection within ${ms * SLOW} ms\nframes:\n${this.dump()}`);
        }
    }

    write(buf) {
        if (!this.sock.destroyed) {
            this.sock.write(buf);
        }
    }

    /* write bytes one (or n) at a time, yielding to the event loop between writes */
    async writeSplit(buf, n = 1, pauseMs = 0) {
        for (let i = 0; i < buf.length; i += n) {
            this.write(buf.subarray(i, i + n));
            await new Promise((r) => (pauseMs ? setTimeout(r, pauseMs) : setImmediate(r)));
        }
    }

    send(opcode, payload, opts) {
        this.write(buildFrame(opcode, payload, opts));
    }

    sendText(text, opts) {
        this.send(OP.TEXT, text, opts);
    }

    sendJson(obj, opts) {
        this.sendText(JSON.stringify(obj), opts);
    }

    sendClose(code, reason, opts) {
        this.send(OP.CLOSE, closePayload(code, reason), opts);
    }

    close() {
        this.sock.destroy();
    }

    /* abort the TCP connection with an RST (under TLS too) */
    reset() {
        (this.sock.tcp || this.sock).resetAndDestroy();
    }

    destroy() {
        this.sock.destroy();
    }
}

function parseEvent(text, ws) {
    let j;
    try {
        j = JSON.parse(text);
    } catch (e) {
        throw new Error(`server sent invalid JSON ${JSON.stringify(text)}: ${e.message}${ws ? `\nframes:\n${ws.dump()}` : ''}`);
    }
    if (typeof j.data === 'string') {
        try {
            j.dataParsed = JSON.parse(j.data);
        } catch {
            j.dataParsed = j.data;
        }
    } else {
        j.dataParsed = j.data;
    }
    j.raw = text;
    return j;
}

/*
 * Send a raw HTTP request (any bytes) and read the response head and body
 * (Content-Length or until close).
 */
function rawHttp(port, request, timeout = 5000) {
    return new Promise((resolve, reject) => {
        const sock = connectSocket(port);
        let buf = Buffer.alloc(0);
        let res = null;
        const timer = setTimeout(() => {
            sock.destroy();
            reject(new Error(`no complete response in ${timeout * SLOW} ms; got ${JSON.stringify(buf.toString('latin1'))}`));
        }, timeout * SLOW);
        const done = () => {
            clearTimeout(timer);
            sock.destroy();
            res.body = buf.subarray(res.headLength).toString('utf8');
            resolve(res);
        };
        sock.on('data', (c) => {
            buf = Buffer.concat([buf, c]);
            if (!res) {
                res = parseHttpHead(buf);
            }
            if (res) {
                const cl = Number(res.headers['content-length']);
                if (!Number.isNaN(cl) && buf.length - res.headLength >= cl) {
                    done();
                }
            }
        });
        sock.on('end', () => {
            if (res) {
                done();
            } else {
                clearTimeout(timer);
                reject(new Error(`connection closed without a response; got ${JSON.stringify(buf.toString('latin1'))}`));
            }
        });
        sock.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        sock.write(request);
    });
}

module.exports = { RawWs, OP, connectSocket, buildFrame, closePayload, acceptFor, describeFrame, parseEvent, rawHttp };
