// A real OpenID Provider for the SSO end-to-end tests: npm `oidc-provider` (OpenID-certified)
// on 127.0.0.1, configured by the test through a JSON file.
//
//   node provider.mjs <config.json>        (or OIDC_PROVIDER_CONFIG=<config.json>)
//
// Prints `READY <issuer-url>` on stdout once it accepts connections (and writes
// {"issuer","port","pid"} to config.ready_file / OIDC_READY_FILE if given). Our own other
// output (one line per request, errors) goes to stderr; oidc-provider itself may print NOTICE
// lines on stdout, so read stdout for the line that starts with `READY `.
//
// Config (every field optional but clients/accounts):
//   {
//     "port": 0,                            // 0 = a free one
//     "issuer": "http://127.0.0.1:{port}",  // {port} is replaced; default as shown
//     "signing_algs": ["RS256", "ES256"],   // one key of each generated at start
//     "id_token_claims": true,              // scope claims in the ID token too, not only userinfo
//     "scopes": {"groups": ["groups"]},     // extra scope -> claims (openid/email/profile/groups built in)
//     "clients": [{"client_id", "client_secret", "redirect_uris": [...],
//                  "token_endpoint_auth_method": "client_secret_basic",
//                  "id_token_signed_response_alg": "RS256", "post_logout_redirect_uris": [...]}],
//     "accounts": [{"id": "alice", "login": "alice", "password": "...",
//                   "claims": {"email", "email_verified", "name", "groups": [...], ...}}]
//   }
// `login` defaults to the id; the form also accepts the account's email. `sub` is the id.
//
// Test controls on the same port (127.0.0.1 only):
//   POST /__test/rotate   {"alg": "RS256", "retire": false}  a new key of alg becomes the signer
//                          (first in the JWKS); retire:true also drops every older key of that alg.
//                          SIGUSR2 does {"alg": first signing alg}.
//   POST /__test/account  {"id", "password", "claims"}  adds or replaces an account
//   GET  /__test/state     {issuer, keys:[{kid,alg}], requests:{"GET /jwks": n, ...}, logins:[...]}
//
// PKCE (S256) is required of every client. Interactions are this file's own minimal pages:
// /interaction/:uid shows a form (inputs name="login", name="password", button id="submit");
// consent is granted automatically. No page loads anything from outside 127.0.0.1.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { Provider } from 'oidc-provider';

const configPath = process.argv[2] || process.env.OIDC_PROVIDER_CONFIG;
if (!configPath) {
  console.error('usage: node provider.mjs <config.json>');
  process.exit(2);
}
const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
if (!Array.isArray(cfg.clients) || !Array.isArray(cfg.accounts)) {
  console.error('provider.mjs: config needs "clients" and "accounts" arrays');
  process.exit(2);
}

const log = (...args) => console.error(`[oidc ${new Date().toISOString()}]`, ...args);

// ---- accounts ------------------------------------------------------------------------------
const accounts = new Map();
function putAccount(a) {
  if (!a || typeof a.id !== 'string' || !a.id) throw new Error('account needs a string "id"');
  accounts.set(a.id, { id: a.id, login: a.login || a.id, password: a.password ?? '', claims: a.claims || {} });
}
cfg.accounts.forEach(putAccount);
function findByLogin(login) {
  for (const a of accounts.values()) {
    if (a.login === login || a.id === login || (a.claims.email && a.claims.email === login)) return a;
  }
  return undefined;
}

// ---- keys ----------------------------------------------------------------------------------
function generateKey(alg) {
  let pair;
  switch (alg) {
    case 'RS256': pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }); break;
    case 'ES256': pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }); break;
    default: throw new Error(`unsupported signing alg ${alg} (RS256 or ES256)`);
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}` };
}
const signingAlgs = cfg.signing_algs || ['RS256', 'ES256'];
let keys = signingAlgs.map(generateKey);

// ---- the provider (rebuilt on rotation; its storage is the shared in-memory adapter) -------
const cookieKeys = [crypto.randomBytes(32).toString('hex')];
const stats = { requests: {}, logins: [] };
const scopeClaims = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'locale'],
  groups: ['groups'],
  ...(cfg.scopes || {}),
};

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>${body}</body></html>`;
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: cfg.clients.map((c) => ({
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    jwks: { keys },
    cookies: { keys: cookieKeys },
    claims: scopeClaims,
    conformIdTokenClaims: cfg.id_token_claims === false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.type = 'html';
          ctx.body = page('Sign out', `${form}<button id="logout-confirm" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>`);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<p id="signed-out">You are signed out of the test provider.</p>');
        },
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const a = accounts.get(id);
      if (!a) return undefined;
      return { accountId: id, claims: async () => ({ ...a.claims, sub: id }) };
    },
    async renderError(ctx, out, error) {
      log('error page:', out.error, out.error_description || '', error?.message || '');
      ctx.type = 'html';
      ctx.body = page('Provider error', `<pre id="error">${esc(JSON.stringify(out, null, 2))}</pre>`);
    },
  });
  provider.on('server_error', (ctx, err) => log('server_error', err));
  return provider;
}

// ---- HTTP ----------------------------------------------------------------------------------
let provider;
let handler;
let issuer;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(body);
}
const json = (res, status, v) => send(res, status, 'application/json', JSON.stringify(v));

function loginForm(uid, message, login = '') {
  return page('Sign in to the test provider', `
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  ${message ? `<p id="message">${esc(message)}</p>` : ''}
  <label>Login <input name="login" value="${esc(login)}" autofocus></label>
  <label>Password <input name="password" type="password"></label>
  <button id="submit" type="submit">Sign in</button>
</form>`);
}

async function autoConsent(req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return send(res, 404, 'text/plain', 'not found');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== m[1]) return send(res, 400, 'text/plain', 'interaction mismatch');
  if (req.method === 'GET' && !m[2]) {
    if (details.prompt.name === 'login') return send(res, 200, 'text/html', loginForm(details.uid));
    if (details.prompt.name === 'consent') return autoConsent(req, res, details);
    return send(res, 400, 'text/plain', `unsupported prompt ${details.prompt.name}`);
  }
  if (req.method === 'POST' && m[2]) {
    const form = new URLSearchParams(await readBody(req));
    const login = form.get('login') || '';
    const account = findByLogin(login);
    if (!account || !crypto.timingSafeEqual(
      crypto.createHash('sha256').update(form.get('password') || '').digest(),
      crypto.createHash('sha256').update(account.password).digest(),
    )) {
      log(`login failed for ${JSON.stringify(login)}`);
      return send(res, 200, 'text/html', loginForm(details.uid, 'Invalid login or password.', login));
    }
    stats.logins.push({ id: account.id, client_id: details.params.client_id, at: Date.now() });
    log(`login ok: ${account.id}`);
    return provider.interactionFinished(
      req, res, { login: { accountId: account.id } }, { mergeWithLastSubmission: false },
    );
  }
  return send(res, 405, 'text/plain', 'method not allowed');
}

async function testControl(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  if (route === 'GET /__test/state') {
    return json(res, 200, {
      issuer, keys: keys.map((k) => ({ kid: k.kid, alg: k.alg })), requests: stats.requests, logins: stats.logins,
    });
  }
  const body = req.method === 'POST' ? await readBody(req) : '';
  const input = body ? JSON.parse(body) : {};
  if (route === 'POST /__test/rotate') {
    return json(res, 200, rotate(input.alg || signingAlgs[0], input.retire === true));
  }
  if (route === 'POST /__test/account') {
    putAccount(input);
    return json(res, 200, { ok: true, id: input.id });
  }
  return json(res, 404, { error: 'unknown test control' });
}

function rotate(alg, retire) {
  const fresh = generateKey(alg);
  const kept = retire ? keys.filter((k) => k.alg !== alg) : keys;
  keys = [fresh, ...kept];
  provider = buildProvider(issuer);
  handler = provider.callback();
  log(`rotated ${alg}: new signer ${fresh.kid}${retire ? ' (older keys retired)' : ''}; jwks: ${keys.map((k) => k.kid).join(', ')}`);
  return { kid: fresh.kid, alg, keys: keys.map((k) => ({ kid: k.kid, alg: k.alg })) };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const key = `${req.method} ${url.pathname.startsWith('/interaction/') ? '/interaction/:uid' : url.pathname}`;
  stats.requests[key] = (stats.requests[key] || 0) + 1;
  res.on('finish', () => log(`${req.method} ${url.pathname} -> ${res.statusCode}`));
  let work;
  if (url.pathname.startsWith('/__test/')) work = testControl(req, res, url);
  else if (url.pathname.startsWith('/interaction/')) work = interaction(req, res, url);
  else return handler(req, res);
  work.catch((err) => {
    log(`${req.method} ${url.pathname} failed:`, err);
    if (!res.headersSent) send(res, 500, 'text/plain', `provider test page error: ${err.message}`);
  });
  return undefined;
});

server.listen(cfg.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = (cfg.issuer || 'http://127.0.0.1:{port}').replace('{port}', String(port));
  provider = buildProvider(issuer);
  handler = provider.callback();
  process.on('SIGUSR2', () => rotate(signingAlgs[0], false));
  const ready = cfg.ready_file || process.env.OIDC_READY_FILE;
  if (ready) fs.writeFileSync(ready, JSON.stringify({ issuer, port, pid: process.pid }));
  process.stdout.write(`READY ${issuer}\n`);
  log(`listening; issuer ${issuer}; keys ${keys.map((k) => k.kid).join(', ')}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
// The test may die without killing us: stdin is the test's pipe (or /dev/null); exit with it.
if (process.env.OIDC_EXIT_ON_STDIN_EOF === '1') process.stdin.on('end', () => process.exit(0)).resume();
