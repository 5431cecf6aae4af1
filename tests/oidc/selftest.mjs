// Self-test of the SSO test tools, without the gateway: provider.mjs (the real OpenID Provider)
// and login.mjs (the real browser) against a small stand-in relying party written here that
// follows the gateway's contract (/sso/login -> code + PKCE S256 + state + nonce, /sso/callback
// verifies the ID token against the JWKS and sets portcullis_session, /ui/ shows #whoami, #logout).
// When the gateway's SSO test fails, this tells whether the tools or the gateway are at fault.
//
//   node --test tests/oidc/selftest.mjs

import * as assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const b64u = (b) => Buffer.from(b).toString('base64url');

// ---- the stand-in relying party --------------------------------------------------------------
function standIn({ clientId, clientSecret, alg }) {
  const rp = { jwksFetches: 0, kids: [], pending: new Map(), sessions: new Map() };
  let jwks = null;
  let discovery = null;
  async function getJwks(force) {
    if (!jwks || force) {
      rp.jwksFetches += 1;
      jwks = await (await fetch(discovery.jwks_uri)).json();
    }
    return jwks;
  }
  async function verify(idToken, nonce) {
    const [h, p, s] = idToken.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url'));
    assert.equal(header.alg, alg, 'ID token alg');
    let jwk = (await getJwks(false)).keys.find((k) => k.kid === header.kid);
    if (!jwk) jwk = (await getJwks(true)).keys.find((k) => k.kid === header.kid);
    if (!jwk) throw new Error(`unknown kid ${header.kid}`);
    const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
    const ok = crypto.verify(
      'sha256', Buffer.from(`${h}.${p}`), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key,
      Buffer.from(s, 'base64url'),
    );
    if (!ok) throw new Error('bad ID token signature');
    const claims = JSON.parse(Buffer.from(p, 'base64url'));
    assert.equal(claims.iss, discovery.issuer);
    assert.equal(claims.aud, clientId);
    assert.equal(claims.nonce, nonce);
    assert.ok(claims.exp > Date.now() / 1000);
    rp.kids.push(header.kid);
    return claims;
  }
  rp.server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, rp.base);
      const cookie = /portcullis_session=([^;]+)/.exec(req.headers.cookie || '')?.[1];
      const session = cookie && rp.sessions.get(cookie);
      if (url.pathname === '/sso/login') {
        const state = b64u(crypto.randomBytes(16));
        const nonce = b64u(crypto.randomBytes(16));
        const verifier = b64u(crypto.randomBytes(32));
        rp.pending.set(state, { nonce, verifier, returnTo: url.searchParams.get('return_to') || '/ui/' });
        const auth = new URL(discovery.authorization_endpoint);
        auth.search = new URLSearchParams({
          response_type: 'code', client_id: clientId, redirect_uri: `${rp.base}/sso/callback`,
          scope: 'openid email profile groups', state, nonce,
          code_challenge: b64u(crypto.createHash('sha256').update(verifier).digest()),
          code_challenge_method: 'S256',
        });
        res.writeHead(302, { location: auth.toString() }).end();
      } else if (url.pathname === '/sso/callback') {
        const p = rp.pending.get(url.searchParams.get('state'));
        if (!p) throw new Error('unknown state');
        rp.pending.delete(url.searchParams.get('state'));
        assert.equal(url.searchParams.get('iss'), discovery.issuer);
        const tok = await fetch(discovery.token_endpoint, {
          method: 'POST',
          headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
          body: new URLSearchParams({
            grant_type: 'authorization_code', code: url.searchParams.get('code'),
            redirect_uri: `${rp.base}/sso/callback`, code_verifier: p.verifier,
          }),
        });
        const body = await tok.json();
        if (!tok.ok) throw new Error(`token endpoint: ${JSON.stringify(body)}`);
        const claims = await verify(body.id_token, p.nonce);
        const sid = b64u(crypto.randomBytes(16));
        rp.sessions.set(sid, { claims, idToken: body.id_token, csrf: b64u(crypto.randomBytes(16)) });
        res.writeHead(302, {
          location: p.returnTo,
          'set-cookie': `portcullis_session=${sid}; Path=/; HttpOnly; SameSite=Lax`,
        }).end();
      } else if (url.pathname === '/ui/') {
        if (!session) {
          res.writeHead(302, { location: '/sso/login?return_to=/ui/' }).end();
          return;
        }
        const c = session.claims;
        res.writeHead(200, { 'content-type': 'text/html' }).end(`<!DOCTYPE html><html><body>
<span id="whoami">${c.sub}</span><span id="email">${c.email}</span>
<span id="role">${(c.groups || []).includes('portcullis-admins') ? 'proxy_admin' : 'internal_user'}</span>
<span id="teams">${(c.groups || []).join(',')}</span>
<form id="logout" method="post" action="/sso/logout"><input type="hidden" name="csrf" value="${session.csrf}">
<button id="logout-button" type="submit">Log out</button></form></body></html>`);
      } else if (url.pathname === '/sso/logout' && req.method === 'POST') {
        let raw = '';
        for await (const chunk of req) raw += chunk;
        if (!session || new URLSearchParams(raw).get('csrf') !== session.csrf) throw new Error('bad csrf');
        rp.sessions.delete(cookie);
        const end = new URL(discovery.end_session_endpoint);
        end.search = new URLSearchParams({ id_token_hint: session.idToken, post_logout_redirect_uri: `${rp.base}/ui/` });
        res.writeHead(302, {
          location: end.toString(),
          'set-cookie': 'portcullis_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0',
        }).end();
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`stand-in: ${err.message}`);
    }
  });
  rp.start = async (issuer) => {
    discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  };
  return rp;
}

// ---- helpers ---------------------------------------------------------------------------------
function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}
function startProvider(config) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oidc-selftest-'));
  const file = path.join(dir, 'provider.json');
  fs.writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, [path.join(here, 'provider.mjs'), file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let errors = '';
  child.stderr.on('data', (d) => { errors += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^READY (\S+)$/m.exec(out);
      if (m) resolve({ child, issuer: m[1], log: () => errors });
    });
    child.on('exit', (code) => reject(new Error(`provider exited ${code}:\n${errors}`)));
  });
}
function login(gateway, user, password, extra = []) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(here, 'login.mjs'), '--gateway', gateway, '--user', user, '--password', password, ...extra],
      { timeout: 90000 }, (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}
function parse(r) {
  assert.equal(r.code, 0, `login.mjs failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

// ---- the tests -------------------------------------------------------------------------------
const secret = b64u(crypto.randomBytes(24));
let provider;
const rs = standIn({ clientId: 'rp-rs256', clientSecret: secret, alg: 'RS256' });
const es = standIn({ clientId: 'rp-es256', clientSecret: secret, alg: 'ES256' });

before(async () => {
  const rsPort = await listen(rs.server);
  const esPort = await listen(es.server);
  rs.base = `http://127.0.0.1:${rsPort}`;
  es.base = `http://127.0.0.1:${esPort}`;
  provider = await startProvider({
    clients: [
      { client_id: 'rp-rs256', client_secret: secret, redirect_uris: [`${rs.base}/sso/callback`], post_logout_redirect_uris: [`${rs.base}/ui/`] },
      {
        client_id: 'rp-es256', client_secret: secret, redirect_uris: [`${es.base}/sso/callback`],
        id_token_signed_response_alg: 'ES256', token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    accounts: [
      { id: 'alice', password: 'pw-alice', claims: { email: 'alice@example.com', email_verified: true, name: 'Alice', groups: ['portcullis-admins', 'eng'] } },
      { id: 'bob', login: 'bob@example.com', password: 'pw-bob', claims: { email: 'bob@example.com', email_verified: true, name: 'Bob', groups: [] } },
    ],
  });
  await rs.start(provider.issuer);
  await es.start(provider.issuer);
});
after(() => {
  provider?.child.kill();
  rs.server.close();
  es.server.close();
});

test('discovery: PKCE S256, groups scope and claim, RS256 + ES256 keys', async () => {
  const d = await (await fetch(`${provider.issuer}/.well-known/openid-configuration`)).json();
  assert.equal(d.issuer, provider.issuer);
  assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
  assert.ok(d.scopes_supported.includes('groups'));
  assert.ok(d.claims_supported.includes('groups'));
  const jwks = await (await fetch(d.jwks_uri)).json();
  assert.deepEqual(jwks.keys.map((k) => k.alg).sort(), ['ES256', 'RS256']);
  assert.ok(jwks.keys.every((k) => !k.d), 'no private parts in the JWKS');
});

test('authorize without PKCE is refused', async () => {
  const d = await (await fetch(`${provider.issuer}/.well-known/openid-configuration`)).json();
  const u = new URL(d.authorization_endpoint);
  u.search = new URLSearchParams({ response_type: 'code', client_id: 'rp-rs256', redirect_uri: `${rs.base}/sso/callback`, scope: 'openid', state: 'x', nonce: 'y' });
  const r = await fetch(u, { redirect: 'manual' });
  assert.equal(r.status, 303);
  assert.match(r.headers.get('location'), /error=invalid_request/);
});

test('browser login, claims, cookie flags, then logout back to the login form', async () => {
  const r = parse(await login(rs.base, 'alice', 'pw-alice', ['--logout']));
  assert.equal(r.final_url, `${rs.base}/ui/`);
  assert.equal(r.whoami, 'alice');
  assert.equal(r.email, 'alice@example.com');
  assert.equal(r.role, 'proxy_admin');
  assert.equal(r.teams, 'portcullis-admins,eng');
  const c = r.cookies.find((x) => x.name === 'portcullis_session');
  assert.ok(c, JSON.stringify(r.cookies));
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Lax');
  assert.ok(r.logout.login_form, JSON.stringify(r.logout));
  assert.equal(r.logout.whoami, null);
  assert.ok(!r.logout.cookies.some((x) => x.name === 'portcullis_session'));
  assert.equal(r.logout.replay.whoami, null, 'the stand-in forgets sessions on logout');
});

test('login by email; a wrong password fails with a screenshot', async () => {
  assert.equal(parse(await login(rs.base, 'bob@example.com', 'pw-bob')).whoami, 'bob');
  const bad = await login(rs.base, 'alice', 'wrong');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /rejected the login/);
  const shot = /screenshot: (\S+)/.exec(bad.stderr)?.[1];
  assert.ok(shot && fs.statSync(shot).size > 0, bad.stderr);
  fs.rmSync(path.dirname(shot), { recursive: true, force: true });
});

test('ES256 ID tokens', async () => {
  assert.equal(parse(await login(es.base, 'alice', 'pw-alice')).whoami, 'alice');
  assert.match(es.kids.at(-1), /^es256-/);
});

test('key rotation: a new signer, an unknown kid, the JWKS fetched again', async () => {
  const before = rs.jwksFetches;
  const oldKid = rs.kids.at(-1);
  const rot = await (await fetch(`${provider.issuer}/__test/rotate`, { method: 'POST', body: JSON.stringify({ alg: 'RS256', retire: true }) })).json();
  assert.notEqual(rot.kid, oldKid);
  assert.ok(!rot.keys.some((k) => k.kid === oldKid), 'retired');
  assert.equal(parse(await login(rs.base, 'alice', 'pw-alice')).whoami, 'alice');
  assert.equal(rs.kids.at(-1), rot.kid);
  assert.equal(rs.jwksFetches, before + 1);
  const state = await (await fetch(`${provider.issuer}/__test/state`)).json();
  assert.ok(state.requests['GET /jwks'] >= 3, JSON.stringify(state.requests));
});
