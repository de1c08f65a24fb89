'use strict';
/*
 * Pusher HTTP API request signing (docs/protocol.md, "Signatures"),
 * written from the spec so tests can also produce wrong signatures:
 *
 *   string_to_sign = METHOD "\n" PATH "\n" sorted "k=v" joined by "&"
 *                    (values NOT URL-encoded; auth_signature excluded)
 *   auth_signature = hex(HMAC-SHA256(secret, string_to_sign))
 */

const crypto = require('node:crypto');

function md5(body) {
    return crypto.createHash('md5').update(body).digest('hex');
}

function hmacHex(secret, text) {
    return crypto.createHmac('sha256', secret).update(text).digest('hex');
}

function stringToSign(method, path, params) {
    const q = Object.keys(params)
        .filter((k) => k !== 'auth_signature')
        .sort()
        .map((k) => `${k}=${params[k]}`)
        .join('&');
    return `${method}\n${path}\n${q}`;
}

/*
 * Returns the request path with its signed query string.
 *   method, path ('/apps/ID/events'), body (string, POST), key, secret
 *   params        extra query params (decoded values, e.g. info)
 *   timestamp     auth_timestamp (default now)
 *   bodyMd5       override body_md5 (default md5(body) when body given)
 *   encode        'php' URL-encodes values on the wire like Guzzle;
 *                 default writes them raw like pusher-http-node
 *   signSecret    secret used for the HMAC (default secret)
 *   signPath      path used in the string to sign (default path)
 */
function signedPath(o) {
    const params = {
        auth_key: o.key,
        auth_timestamp: String(o.timestamp === undefined ? Math.floor(Date.now() / 1000) : o.timestamp),
        auth_version: '1.0',
        ...(o.params || {}),
    };
    if (o.bodyMd5 !== undefined) {
        params.body_md5 = o.bodyMd5;
    } else if (o.body !== undefined && o.method === 'POST') {
        params.body_md5 = md5(o.body);
    }
    const sig = hmacHex(o.signSecret === undefined ? o.secret : o.signSecret, stringToSign(o.method, o.signPath || o.path, params));
    params.auth_signature = sig;
    const enc = o.encode === 'php' ? (v) => encodeURIComponent(v) : (v) => v;
    const q = Object.keys(params)
        .map((k) => `${k}=${enc(params[k])}`)
        .join('&');
    return `${o.path}?${q}`;
}

/* channel auth for private-*: "key:hex(HMAC(secret, socket_id:channel))" */
function channelAuth(key, secret, socketId, channel, channelData) {
    const text = channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`;
    return `${key}:${hmacHex(secret, text)}`;
}

module.exports = { md5, hmacHex, stringToSign, signedPath, channelAuth };
