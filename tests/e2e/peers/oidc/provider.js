// tests/e2e/peers/oidc/provider.js - a real, OpenID-certified provider
// (npm oidc-provider 9.x) for ephemera's end-to-end sign-in tests.
//
//   node provider.js [PORT]          (or EPH_OIDC_PORT=PORT; 0 or none: any free port)
//
// Listens on 127.0.0.1 only; the issuer is "http://127.0.0.1:<port>" (no
// trailing slash). Prints "ready <port>" on stdout once it accepts
// connections, then "issued id_token alg=<alg> kid=<kid>" for each ID token
// the token endpoint hands out; stop it by its pid (SIGTERM).
//
// One client: client_id "eph", client_secret "eph-secret" (HTTP Basic at the
// token endpoint), authorization code flow with PKCE S256 required,
// redirect URIs from EPH_OIDC_REDIRECTS (comma-separated, exact matches).
// EPH_OIDC_ID_TOKEN_ALG picks the ID token's algorithm (RS256 by default,
// or ES256); the JWKS always publishes one RSA and one EC P-256 key, both
// made fresh at each start.
//
// Sign-in goes through the development login form (devInteractions): any
// login name (it becomes `sub`) with any non-empty password. Consent is
// taken as given for the "eph" client (loadExistingGrant below), so the
// login form is the only page a user sees. The account's claims: sub =
// login, email = "<login>@example.com" (verified), name = login; with
// conformIdTokenClaims off they are all in the ID token.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const CLIENT_ID = 'eph';
const CLIENT_SECRET = 'eph-secret';

const portArg = process.argv[2] ?? process.env.EPH_OIDC_PORT ?? '0';
const port = Number.parseInt(portArg, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`provider.js: bad port '${portArg}'`);
  process.exit(2);
}
const redirects = (process.env.EPH_OIDC_REDIRECTS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s.length > 0);
if (redirects.length === 0) {
  console.error('provider.js: set EPH_OIDC_REDIRECTS to the client\'s redirect URIs (comma-separated)');
  process.exit(2);
}
const idTokenAlg = process.env.EPH_OIDC_ID_TOKEN_ALG || 'RS256';

// Fresh signing keys at each start: a test that restarts the provider sees
// a key rotation, as a client must handle.
function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${randomUUID()}`, use: 'sig', alg: 'RS256' },
    { ...ec, kid: `ec-${randomUUID()}`, use: 'sig', alg: 'ES256' },
  ];
}

function configuration() {
  return {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: redirects,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: idTokenAlg,
    }],
    jwks: { keys: signingKeys() },
    cookies: { keys: [randomUUID()] },
    responseTypes: ['code'],
    pkce: { required: () => true }, // oidc-provider 9 supports S256 only
    conformIdTokenClaims: false, // email and name in the ID token, not only at /me
    // Lifetimes in seconds, set so the provider does not warn about defaults.
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: `${id}@example.com`, email_verified: true, name: id };
        },
      };
    },
    // Consent pre-granted for our client: the grant in the session (or a new
    // one) gets every scope and claim the request asks for, so the consent
    // prompt never has anything missing to ask about.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (oidc.client.clientId !== CLIENT_ID) {
        return grant;
      }
      if (!grant) {
        grant = new oidc.provider.Grant({ accountId: oidc.account.accountId, clientId: oidc.client.clientId });
      }
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      grant.addOIDCClaims([...oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
  };
}

// Listen first, so that port 0 works: the issuer needs the real port.
const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${actual}`, configuration());
  provider.on('server_error', (_ctx, err) => console.error('provider server_error:', err));
  // One line per ID token issued at the token endpoint, naming its algorithm
  // and key: the tests check which kind of token the client accepted.
  provider.on('grant.success', (ctx) => {
    const token = ctx.body?.id_token;
    if (typeof token === 'string') {
      const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
      console.log(`issued id_token alg=${header.alg} kid=${header.kid}`);
    }
  });
  server.on('request', provider.callback());
  console.log(`ready ${actual}`);
});
server.on('error', (err) => {
  console.error(`provider.js: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
