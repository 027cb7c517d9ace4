// A real OpenID provider (oidc-provider 9) for the tests of heimweg's sign-in: the gateway talks
// to it exactly as it would to a company's provider (discovery, JWKS, authorization code + PKCE,
// client secret at the token endpoint, signed ID token), so the tests exercise the real protocol
// rather than a mock of it. Five fixed users, a plain login form, nothing persisted.
//
// Start (after `npm ci` in tests/oidc; any working directory):
//   PORT=9391 REDIRECT_URI=http://127.0.0.1:9392/oidc/callback node tests/oidc/provider.mjs
// Start node itself in the background (`VAR=… node … &`), not `cd … && node … &`, whose $! is a
// subshell: the test must be able to stop the provider by its PID.
// Env:
//   REDIRECT_URI   required; several allowed, comma-separated
//   HOST           127.0.0.1
//   PORT           0 = a free port; the actual one is printed as `READY <port>` on stdout (the
//                  only thing ever printed there) once requests are served
//   ISSUER         http://HOST:PORT (with the actual port); set it when HOST is 0.0.0.0
//   CLIENT_ID      heimweg
//   CLIENT_SECRET  heimweg-secret (client_secret_basic and client_secret_post both accepted)
//   KEEP_KEYS      3: how many signing keys /jwks publishes (the signing one + older ones)
// One line per request on stderr (method, path, status), plus failed logins and the provider's
// own errors (e.g. why a token request was refused). SIGTERM/SIGINT: closes everything, exit 0.
// On Node 20 oidc-provider warns "Unsupported runtime" on stderr; it works there all the same.
//
// Users (login / password -> sub). The sub is deliberately not the login, so the gateway must
// not treat one as the other; preferred_username is the login.
//   alice  / wonderland  -> sub-alice-7f3a    groups vpn-users, heimweg-admins
//   bob    / builder     -> sub-bob-2c9e      groups vpn-users, heimweg-helpdesk
//   carol  / caroline    -> sub-carol-b41d    groups vpn-users
//   jürgen / grüße       -> sub-juergen-5e07  groups "Straßenbau, Tiefbau" (non-ASCII, a comma),
//                                            at the userinfo endpoint only, not in the ID token
//   dave   / dave-secret -> sub-dave-90c6     groups kantine (no group that may connect)
//
// A second factor: carol also has a one-time code, 246810 (a stand-in for her authenticator
// app). A login with the right code says so in the ID token (amr ["pwd", "otp"]), one without
// it only ["pwd"]; a wrong code is refused like a wrong password ("Einmalcode falsch").
// Login form at /interaction/<uid>: input#login (name=login), input#password (name=password),
// button[type=submit]. A wrong login answers 401 with the form again and "Benutzername oder
// Passwort falsch", never a redirect, so a test sees the failure on the provider's page.
// A finished login leaves a provider session cookie: to log in as someone else, use a fresh
// cookie jar / browser context (or prompt=login).
//
// Control routes, loopback peers only (they would be a hole in any real provider):
//   POST /__rotate  A new signing key signs from now on; the older ones stay in /jwks until
//                   KEEP_KEYS is exceeded. Answers {"kids":[newest first]}. Exists because a
//                   provider rotates keys while the gateway has the old JWKS cached: the gateway
//                   must refetch on an unknown kid. Logins in flight and issued codes survive.
//   POST /__clock?offset=SECONDS&id_token_ttl=SECONDS  (either or both; defaults 0 and 600)
//                   Shifts the provider's clock and sets the ID token lifetime, answers the new
//                   values as JSON. Exists because oidc-provider refuses a TTL <= 0, so the only
//                   way to get an already expired ID token is an issuer whose clock is behind:
//                   offset=-300&id_token_ttl=60 gives exp = now - 240 s; offset=0 sets it back.
//                   Change it between logins, not between the login and the code exchange (a
//                   code lives 60 s on the provider's clock). Keep |offset| under 600 s, the
//                   lifetime of a login in flight.
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info, i.e. on stdout; keep stdout for READY.
console.info = console.error;
console.log = console.error;

const fail = (msg) => { console.error(`provider.mjs: ${msg}`); process.exit(2); };
const env = (k, dflt) => process.env[k] || dflt;

const HOST = env('HOST', '127.0.0.1');
const PORT = Number(env('PORT', '0'));
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`PORT ${process.env.PORT} is not a port`);
const REDIRECT_URIS = (process.env.REDIRECT_URI ?? '').split(',').map((s) => s.trim()).filter(Boolean);
if (!REDIRECT_URIS.length) fail('REDIRECT_URI is not set');
for (const u of REDIRECT_URIS) { try { new URL(u); } catch { fail(`REDIRECT_URI ${u} is not a URL`); } }
const CLIENT_ID = env('CLIENT_ID', 'heimweg');
const CLIENT_SECRET = env('CLIENT_SECRET', 'heimweg-secret');
const KEEP_KEYS = Number(env('KEEP_KEYS', '3'));
if (!Number.isInteger(KEEP_KEYS) || KEEP_KEYS < 1) fail(`KEEP_KEYS ${process.env.KEEP_KEYS} is not a positive integer`);

// Everything in oidc-provider (token iat/exp, artifact expiry, cookies) reads Date.now() when it
// runs, so one patch here moves the whole provider's clock and keeps it consistent with itself.
let clockOffsetS = 0;
let idTokenTtlS = 600;
const realNow = Date.now;
Date.now = () => realNow() + clockOffsetS * 1000;

const USERS = new Map(Object.entries({
  alice: { sub: 'sub-alice-7f3a', password: 'wonderland', name: 'Alice Admin',
    email: 'alice@stadt.example', groups: ['vpn-users', 'heimweg-admins'] },
  bob: { sub: 'sub-bob-2c9e', password: 'builder', name: 'Bob Helpdesk',
    email: 'bob@stadt.example', groups: ['vpn-users', 'heimweg-helpdesk'] },
  carol: { sub: 'sub-carol-b41d', password: 'caroline', name: 'Carol Staff',
    email: 'carol@stadt.example', groups: ['vpn-users'], otp: '246810' },
  'jürgen': { sub: 'sub-juergen-5e07', password: 'grüße', name: 'Jürgen Müller',
    email: 'juergen@stadt.example', groups: ['Straßenbau, Tiefbau'] },
  dave: { sub: 'sub-dave-90c6', password: 'dave-secret', name: 'Dave Outside',
    email: 'dave@stadt.example', groups: ['kantine'] },
}));
const BY_SUB = new Map([...USERS].map(([login, u]) => [u.sub, { login, ...u }]));

// One store for every Provider instance: a rotation rebuilds the Provider, and oidc-provider's
// built-in memory adapter belongs to one instance, which would drop sessions, logins in flight
// and issued codes.
const store = new Map(); // key -> { value, expiresAt (ms on the provider's clock) | Infinity }
const sget = (key) => {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.expiresAt <= Date.now()) { store.delete(key); return undefined; }
  return e.value;
};
const sset = (key, value, expiresIn) => store.set(key, {
  value, expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity });
class SharedAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    sset(this.key(id), payload, expiresIn);
    if (this.model === 'Session') sset(`index:uid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) sset(`index:userCode:${payload.userCode}`, id, expiresIn);
    if (payload.grantId && this.model !== 'Grant') {
      // revokeByGrantId must find every token of a grant; the list lives as long as its longest token
      const k = `index:grant:${payload.grantId}`;
      const keys = new Set(sget(k) ?? []).add(this.key(id));
      const until = Math.max(store.get(k)?.expiresAt ?? 0, store.get(this.key(id)).expiresAt);
      store.set(k, { value: [...keys], expiresAt: until });
    }
  }
  async find(id) { return sget(this.key(id)); }
  async findByUid(uid) { const id = sget(`index:uid:${uid}`); return id && this.find(id); }
  async findByUserCode(code) { const id = sget(`index:userCode:${code}`); return id && this.find(id); }
  async consume(id) { const p = sget(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const k of sget(`index:grant:${grantId}`) ?? []) store.delete(k);
    store.delete(`index:grant:${grantId}`);
  }
}

const newKey = () => ({
  ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
  kid: randomUUID(), alg: 'ES256', use: 'sig',
});
let keys = [newKey()]; // newest first: oidc-provider signs with the first key that fits

// Fixed, so that the cookies of a login in flight still verify after a rotation rebuilt the Provider.
const COOKIE_KEYS = ['heimweg-oidc-test-cookie-key-0f6b2d4c8e1a3579'];

let ISSUER; // known once listening (PORT may be 0)
function build() {
  const p = new Provider(ISSUER, {
    adapter: SharedAdapter,
    clients: [{
      client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: REDIRECT_URIS,
      grant_types: ['authorization_code'], response_types: ['code'],
      // oidc-provider 9 accepts either secret method from a client registered with one of them
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    }],
    jwks: { keys },
    cookies: { keys: COOKIE_KEYS },
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    enabledJWA: { idTokenSigningAlgValues: ['ES256'] }, // what discovery advertises, so clients pin it
    pkce: { required: () => true }, // the default demands PKCE only from public clients
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: { openid: ['sub', 'amr'], acr: null, auth_time: null, // amr always, as Keycloak's AMR mapper adds it
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'], groups: ['groups'] },
    conformIdTokenClaims: false, // else the scope claims go only to userinfo, not into the ID token
    ttl: { IdToken: () => idTokenTtlS, AccessToken: 600, AuthorizationCode: 60, Interaction: 600,
      Session: 3600, Grant: 3600 },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const u = BY_SUB.get(sub);
      // jürgen's groups are only at the userinfo endpoint, as many providers keep them (a
      // Keycloak mapper without "add to ID token", ADFS): the gateway must ask there.
      return u && { accountId: sub, claims: async (use) => ({ sub, name: u.name, preferred_username: u.login,
        email: u.email, email_verified: true,
        ...(use === 'id_token' && u.login === 'jürgen' ? {} : { groups: u.groups }) }) };
    },
    // First-party client: grant whatever it asks for, so no consent prompt follows the login.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      if (!oidc.session.accountId) return undefined;
      const gid = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = gid && await oidc.provider.Grant.find(gid);
      if (!grant || grant.accountId !== oidc.session.accountId) {
        grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
      }
      if (oidc.requestParamOIDCScopes.size) grant.addOIDCScope(oidc.requestParamOIDCScopes);
      if (oidc.requestParamClaims.size) grant.addOIDCClaims(oidc.requestParamClaims);
      await grant.save();
      return grant;
    },
  });
  for (const ev of ['authorization.error', 'grant.error', 'userinfo.error', 'end_session.error',
    'discovery.error', 'jwks.error', 'server_error']) {
    p.on(ev, (ctx, err) => console.error(`${ev}: ${err.error ?? err.name}: ${err.error_description ?? err.message}`
      + (ev === 'server_error' ? `\n${err.stack}` : '')));
  }
  return p;
}
let provider;
let handler;

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, login = '', error = '') => `<!doctype html>
<html lang="de"><head><meta charset="utf-8"><title>Anmelden – Test-Anbieter</title></head>
<body><main><h1>Anmelden</h1>
${error ? `<p role="alert">${esc(error)}</p>\n` : ''}<form method="post" action="/interaction/${esc(uid)}/login" accept-charset="utf-8">
<p><label for="login">Benutzername</label> <input id="login" name="login" autocomplete="username" value="${esc(login)}"></p>
<p><label for="password">Passwort</label> <input id="password" name="password" type="password" autocomplete="current-password"></p>
<p><label for="otp">Einmalcode (falls eingerichtet)</label> <input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code"></p>
<p><button type="submit">Anmelden</button></p>
</form></main></body></html>
`;
const readForm = (req) => new Promise((resolve, reject) => {
  const chunks = [];
  let size = 0;
  req.on('data', (d) => { size += d.length; if (size <= 65536) chunks.push(d); });
  req.on('end', () => (size > 65536
    ? reject(Object.assign(new Error('form body too large'), { statusCode: 413 }))
    : resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8')))));
  req.on('error', reject);
});
const send = (res, status, type, text) => {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(text);
};
const json = (res, status, obj) => send(res, status, 'application/json', `${JSON.stringify(obj)}\n`);
const isLoopback = (a) => a === '::1' || /^(::ffff:)?127\./.test(a ?? '');

async function control(req, res, url) {
  if (!isLoopback(req.socket.remoteAddress)) return json(res, 403, { error: 'loopback only' });
  if (req.method !== 'POST') return json(res, 405, { error: 'POST only' });
  if (url.pathname === '/__rotate') {
    keys = [newKey(), ...keys].slice(0, KEEP_KEYS);
    provider = build();
    handler = provider.callback();
    console.error(`rotated: signing with ${keys[0].kid}, /jwks has ${keys.length}`);
    return json(res, 200, { kids: keys.map((k) => k.kid) });
  }
  if (url.pathname === '/__clock') {
    const q = url.searchParams;
    const offset = q.has('offset') ? Number(q.get('offset')) : clockOffsetS;
    const ttl = q.has('id_token_ttl') ? Number(q.get('id_token_ttl')) : idTokenTtlS;
    if (!Number.isInteger(offset)) return json(res, 400, { error: 'offset must be an integer (seconds)' });
    if (!Number.isInteger(ttl) || ttl < 1) return json(res, 400, { error: 'id_token_ttl must be a positive integer (seconds)' });
    clockOffsetS = offset;
    idTokenTtlS = ttl;
    console.error(`clock: offset ${offset} s, id token ttl ${ttl} s`);
    return json(res, 200, { offset, id_token_ttl: ttl, now: Math.floor(Date.now() / 1000) });
  }
  return json(res, 404, { error: 'no such control route' });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw Object.assign(new Error('interaction does not match the cookie'), { statusCode: 400 });
  if (details.prompt.name !== 'login') throw new Error(`unexpected prompt ${details.prompt.name}`);
  if (!action && req.method === 'GET') return send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
  if (action !== 'login' || req.method !== 'POST') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  const form = await readForm(req);
  const login = form.get('login') ?? '';
  const user = USERS.get(login);
  if (!user || user.password !== form.get('password')) {
    console.error(`login failed for ${JSON.stringify(login)}`);
    return send(res, 401, 'text/html; charset=utf-8', loginPage(uid, login, 'Benutzername oder Passwort falsch'));
  }
  const otp = form.get('otp') ?? '';
  if (otp && otp !== user.otp) {
    console.error(`one-time code wrong for ${JSON.stringify(login)}`);
    return send(res, 401, 'text/html; charset=utf-8', loginPage(uid, login, 'Einmalcode falsch'));
  }
  const amr = otp ? ['pwd', 'otp'] : ['pwd'];
  console.error(`login ok: ${login} (${user.sub}) amr ${amr.join(',')}`);
  return provider.interactionFinished(req, res, { login: { accountId: user.sub, amr } }, { mergeWithLastSubmission: false });
}

const server = http.createServer(async (req, res) => {
  const t0 = realNow();
  const url = new URL(req.url, 'http://localhost');
  res.on('finish', () => console.error(`${req.method} ${url.pathname} ${res.statusCode} ${realNow() - t0}ms`));
  try {
    if (!handler) return send(res, 503, 'text/plain; charset=utf-8', 'starting\n');
    if (url.pathname.startsWith('/__')) return await control(req, res, url);
    const m = url.pathname.match(/^\/interaction\/([\w-]+)(?:\/(login))?$/);
    if (m) return await interaction(req, res, m[1], m[2]);
    return handler(req, res);
  } catch (e) {
    const what = `${e.name}: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`;
    console.error(`${req.method} ${url.pathname}: ${what}`);
    if (!res.headersSent) send(res, e.statusCode ?? 500, 'text/plain; charset=utf-8', `error: ${what}\n`);
    else res.end();
  }
});

server.listen(PORT, HOST, async () => {
  const port = server.address().port;
  ISSUER = env('ISSUER', `http://${HOST.includes(':') ? `[${HOST}]` : HOST}:${port}`);
  try {
    provider = build();
    await provider.Client.find(CLIENT_ID); // a bad client (e.g. redirect URI) fails here, not at the first login
  } catch (e) {
    fail(`cannot set up the provider: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`);
  }
  handler = provider.callback();
  console.error(`issuer ${ISSUER}, client ${CLIENT_ID}, redirect ${REDIRECT_URIS.join(' ')}, signing key ${keys[0].kid}`);
  process.stdout.write(`READY ${port}\n`);
});
server.on('error', (e) => fail(`cannot listen on ${HOST}:${PORT}: ${e.message}`));

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
