// tests/e2e/peers/oidc/fake_provider.js - a deliberately simple OpenID
// provider for ephemera's end-to-end tests of what a client must refuse.
// A real provider (provider.js) never issues a bad ID token; this one issues
// whichever bad token the test asks for. Node's own crypto only: no packages.
//
//   node fake_provider.js [PORT]      (0 or none: any free port)
//
// Listens on 127.0.0.1 only; the issuer is "http://127.0.0.1:<port>". Prints
// "ready <port>" on stdout once it accepts connections, then one line per
// request it answers; stop it by its pid (SIGTERM).
//
// One client: client_id "eph", client_secret "eph-secret" (HTTP Basic at the
// token endpoint), redirect URIs from EPH_OIDC_REDIRECTS (comma-separated,
// exact matches), PKCE S256 required. EPH_OIDC_ID_TOKEN_ALG: RS256 (default)
// or ES256, the algorithm of the published key.
//
//   GET  /.well-known/openid-configuration    discovery
//   GET  /jwks                                the published key (counted)
//   GET  /authorize                           no login page: checks the request
//        and redirects straight back with ?code=...&state=...
//   POST /token                               checks client, code (once),
//        redirect_uri and PKCE, then answers an ID token made as `mode` says
//   POST /control   JSON, each member optional:
//        {"mode": "good", "sub": "...", "email": "...", "email_verified": true,
//         "rotate": true}
//        mode is one of MODES below; rotate makes a new key with a new kid
//        and publishes it alone (the old one is withdrawn). Answers the state.
//   GET  /control   {"mode", "kid", "jwks_fetches", "tokens_issued", ...}
import { createHash, createHmac, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import { createServer } from 'node:http';

const CLIENT_ID = 'eph';
const CLIENT_SECRET = 'eph-secret';
const TOKEN_TTL_S = 300;
const CODE_TTL_MS = 60_000;
const MAX_BODY_BYTES = 64 * 1024;

// What the next ID tokens are like. Everything but "good" must be refused.
const MODES = {
  good: 'a valid token signed with the published key',
  unknown_kid: 'signed with a key that is not published, under a kid of its own',
  forged: 'signed with another key under the published key\'s kid',
  expired: 'expired an hour ago',
  wrong_aud: 'issued to another client',
  wrong_nonce: 'carries a nonce the client never sent',
  wrong_iss: 'names another issuer',
  alg_none: 'alg "none", no signature',
  alg_hs256: 'HS256 with the published public key as the HMAC secret',
  no_sub: 'has no subject',
};

const portArg = process.argv[2] ?? '0';
const port = Number.parseInt(portArg, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fake_provider.js: bad port '${portArg}'`);
  process.exit(2);
}
const redirects = new Set((process.env.EPH_OIDC_REDIRECTS ?? '')
  .split(',').map((s) => s.trim()).filter((s) => s.length > 0));
if (redirects.size === 0) {
  console.error('fake_provider.js: set EPH_OIDC_REDIRECTS to the client\'s redirect URIs (comma-separated)');
  process.exit(2);
}
const alg = process.env.EPH_OIDC_ID_TOKEN_ALG || 'RS256';
if (alg !== 'RS256' && alg !== 'ES256') {
  console.error(`fake_provider.js: EPH_OIDC_ID_TOKEN_ALG must be RS256 or ES256, not '${alg}'`);
  process.exit(2);
}

// A signing key of the provider's algorithm: the private KeyObject, and the
// public JWK as published.
function newKey() {
  const pair = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = `${alg === 'RS256' ? 'rsa' : 'ec'}-${randomUUID()}`;
  const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg };
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, kid, jwk };
}

const state = {
  mode: 'good',
  sub: 'fake-carol',
  email: 'carol@example.com',
  email_verified: true,
  key: newKey(),
  jwks_fetches: 0,
  tokens_issued: 0,
  rotations: 0,
};
const codes = new Map(); // code -> {nonce, challenge, redirect_uri, expires_ms}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function signJws(header, payload, key) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  let sig;
  if (header.alg === 'none') {
    sig = Buffer.alloc(0);
  } else if (header.alg === 'HS256') {
    sig = createHmac('sha256', key).update(input).digest();
  } else if (header.alg === 'RS256') {
    sig = sign('sha256', Buffer.from(input), key);
  } else { // ES256: JWS wants r||s (64 bytes), not DER
    sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  }
  return `${input}.${b64url(sig)}`;
}

// The ID token for a code's request, made bad as the mode says.
function idToken(issuer, grant) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    sub: state.sub,
    aud: CLIENT_ID,
    exp: now + TOKEN_TTL_S,
    iat: now,
    nonce: grant.nonce,
    email: state.email,
    email_verified: state.email_verified,
    name: state.sub,
  };
  let header = { alg, typ: 'JWT', kid: state.key.kid };
  let key = state.key.privateKey;
  switch (state.mode) {
    case 'good': break;
    case 'unknown_kid': {
      const other = newKey();
      header = { ...header, kid: other.kid };
      key = other.privateKey;
      break;
    }
    case 'forged': key = newKey().privateKey; break;
    case 'expired': claims.iat = now - 7200; claims.exp = now - 3600; break;
    case 'wrong_aud': claims.aud = 'another-client'; break;
    case 'wrong_nonce': claims.nonce = randomBytes(16).toString('hex'); break;
    case 'wrong_iss': claims.iss = 'http://127.0.0.1:1'; break;
    case 'alg_none': header = { alg: 'none', typ: 'JWT' }; break;
    case 'alg_hs256':
      header = { ...header, alg: 'HS256' };
      key = state.key.publicKey.export({ format: 'pem', type: 'spki' });
      break;
    case 'no_sub': delete claims.sub; break;
    default: throw new Error(`unknown mode ${state.mode}`);
  }
  return signJws(header, claims, key);
}

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function tokenError(res, status, error, description) {
  send(res, status, { error, error_description: description });
}

function publicState() {
  return {
    mode: state.mode,
    sub: state.sub,
    email: state.email,
    email_verified: state.email_verified,
    kid: state.key.kid,
    alg,
    jwks_fetches: state.jwks_fetches,
    tokens_issued: state.tokens_issued,
    rotations: state.rotations,
  };
}

function handleAuthorize(res, q) {
  const redirect = q.get('redirect_uri');
  if (q.get('client_id') !== CLIENT_ID || !redirects.has(redirect)) {
    // Never redirect to a URI that is not registered (RFC 6749 4.1.2.1).
    send(res, 400, 'unknown client or redirect_uri');
    return;
  }
  const back = new URL(redirect);
  const problem = q.get('response_type') !== 'code' ? 'unsupported_response_type'
    : !(q.get('scope') ?? '').split(' ').includes('openid') ? 'invalid_scope'
      : q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge') ? 'invalid_request'
        : !q.get('state') ? 'invalid_request' : null;
  if (problem) {
    back.searchParams.set('error', problem);
    if (q.get('state')) back.searchParams.set('state', q.get('state'));
  } else {
    const code = randomBytes(24).toString('base64url');
    codes.set(code, {
      nonce: q.get('nonce'),
      challenge: q.get('code_challenge'),
      redirect_uri: redirect,
      expires_ms: Date.now() + CODE_TTL_MS,
    });
    back.searchParams.set('code', code);
    back.searchParams.set('state', q.get('state'));
  }
  res.writeHead(302, { Location: back.toString(), 'Content-Length': 0 });
  res.end();
}

function handleToken(req, res, body, issuer) {
  const auth = req.headers.authorization ?? '';
  const basic = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString() : '';
  const [id, secret] = basic.split(':').map((s) => decodeURIComponent(s ?? ''));
  if (id !== CLIENT_ID || secret !== CLIENT_SECRET) {
    tokenError(res, 401, 'invalid_client', 'client authentication failed');
    return;
  }
  const form = new URLSearchParams(body);
  if (form.get('grant_type') !== 'authorization_code') {
    tokenError(res, 400, 'unsupported_grant_type', 'authorization_code only');
    return;
  }
  const grant = codes.get(form.get('code') ?? '');
  codes.delete(form.get('code') ?? ''); // a code works once, right or wrong
  if (!grant || grant.expires_ms < Date.now()) {
    tokenError(res, 400, 'invalid_grant', 'unknown, used or expired code');
    return;
  }
  if (form.get('redirect_uri') !== grant.redirect_uri) {
    tokenError(res, 400, 'invalid_grant', 'redirect_uri does not match');
    return;
  }
  const challenge = createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url');
  if (challenge !== grant.challenge) {
    tokenError(res, 400, 'invalid_grant', 'PKCE verification failed');
    return;
  }
  state.tokens_issued += 1;
  console.log(`issued id_token mode=${state.mode} alg=${alg}`);
  send(res, 200, {
    access_token: randomBytes(24).toString('base64url'),
    token_type: 'Bearer',
    expires_in: TOKEN_TTL_S,
    id_token: idToken(issuer, grant),
  });
}

function handleControl(res, body) {
  let change;
  try {
    change = JSON.parse(body || '{}');
  } catch {
    send(res, 400, 'body is not JSON');
    return;
  }
  if (change.mode !== undefined && !(change.mode in MODES)) {
    send(res, 400, `unknown mode '${change.mode}'; known: ${Object.keys(MODES).join(', ')}`);
    return;
  }
  for (const k of ['mode', 'sub', 'email', 'email_verified']) {
    if (change[k] !== undefined) state[k] = change[k];
  }
  if (change.rotate) {
    state.key = newKey();
    state.rotations += 1;
  }
  console.log(`control ${JSON.stringify(publicState())}`);
  send(res, 200, publicState());
}

const server = createServer((req, res) => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const url = new URL(req.url, issuer);
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= MAX_BODY_BYTES) chunks.push(c);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    console.log(`${req.method} ${url.pathname}`);
    if (size > MAX_BODY_BYTES) {
      send(res, 413, 'body too large');
    } else if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
      send(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: [alg],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
        scopes_supported: ['openid', 'email', 'profile'],
      });
    } else if (req.method === 'GET' && url.pathname === '/jwks') {
      state.jwks_fetches += 1;
      send(res, 200, { keys: [state.key.jwk] });
    } else if (req.method === 'GET' && url.pathname === '/authorize') {
      handleAuthorize(res, url.searchParams);
    } else if (req.method === 'POST' && url.pathname === '/token') {
      handleToken(req, res, body, issuer);
    } else if (req.method === 'POST' && url.pathname === '/control') {
      handleControl(res, body);
    } else if (req.method === 'GET' && url.pathname === '/control') {
      send(res, 200, publicState());
    } else {
      send(res, 404, 'not found');
    }
  });
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${server.address().port}`);
});
server.on('error', (err) => {
  console.error(`fake_provider.js: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
