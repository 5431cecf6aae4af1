// A real browser login through the gateway's SSO: headless Debian chromium driven by npm
// `playwright-core` (which cannot download a browser of its own; CHROMIUM overrides the path).
//
//   node login.mjs --gateway http://127.0.0.1:PORT --user alice --password pw [--logout]
//                  [--return-to /ui/] [--timeout-ms 30000]
//
// Opens {gateway}/sso/login?return_to=/ui/, fills the provider's form (name="login",
// name="password", #submit), follows the redirects back to the gateway and waits for #whoami.
// Prints one JSON line on stdout:
//   {"final_url", "whoami", "email", "role", "teams", "cookies": [{name, httpOnly, sameSite,
//    secure, path, session}], "navigations": [...], "logout": {...}}   (logout only with --logout:
//   clicks #logout (a button, or a form whose submit button is clicked) and reports
//   {final_url, login_form, sign_in_link, whoami, cookies, navigations, replay}:
//   replay = {final_url, whoami} of the pre-logout cookies replayed in a fresh browser)
// Cookie values are never printed. URLs are printed without their query values.
// On failure: exit 1, a message on stderr, and a screenshot + the page's HTML in a temp dir
// whose paths are printed.
//
// The browser may only talk to 127.0.0.1 / localhost: everything else is aborted.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const out = { returnTo: '/ui/', timeoutMs: 30000, logout: false };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      i += 1;
      return argv[i];
    };
    switch (a) {
      case '--gateway': out.gateway = next().replace(/\/+$/, ''); break;
      case '--user': out.user = next(); break;
      case '--password': out.password = next(); break;
      case '--return-to': out.returnTo = next(); break;
      case '--timeout-ms': out.timeoutMs = Number(next()); break;
      case '--logout': out.logout = true; break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  out.password ??= process.env.OIDC_LOGIN_PASSWORD;
  if (!out.gateway || !out.user || out.password === undefined) {
    throw new Error('usage: login.mjs --gateway URL --user NAME --password PW [--logout]');
  }
  return out;
}

// A URL with its query values (codes, states) replaced by `…`.
function redact(u) {
  try {
    const url = new URL(u);
    for (const k of [...url.searchParams.keys()]) url.searchParams.set(k, '…');
    return url.toString().replace(/%E2%80%A6/g, '…');
  } catch {
    return u;
  }
}

const LOCAL = new Set(['127.0.0.1', 'localhost', '[::1]']);

function localOnly(route) {
  const { hostname } = new URL(route.request().url());
  return LOCAL.has(hostname) ? route.continue() : route.abort();
}

async function text(page, selector) {
  const el = await page.$(selector);
  return el ? (await el.textContent()).trim() : null;
}

async function cookieReport(context, url) {
  return (await context.cookies(url)).map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite,
    secure: c.secure,
    path: c.path,
    session: c.expires === -1,
  }));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`no chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  }
  const args = ['--disable-dev-shm-usage', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  const browser = await chromium.launch({ executablePath, headless: true, args, timeout: opts.timeoutMs });
  let page;
  let step = 'start';
  const navigations = [];
  const consoleLines = [];
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(opts.timeoutMs);
    await context.route('**/*', localOnly);
    page = await context.newPage();
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(redact(f.url())); });
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(m.text()); });

    step = 'open the gateway login';
    const start = `${opts.gateway}/sso/login?return_to=${encodeURIComponent(opts.returnTo)}`;
    const resp = await page.goto(start);
    if (resp && resp.status() >= 400) {
      throw new Error(`GET ${redact(start)} ended at ${redact(page.url())} with HTTP ${resp.status()}`);
    }
    step = 'the provider login form';
    await page.waitForSelector('input[name="login"]');
    await page.fill('input[name="login"]', opts.user);
    await page.fill('input[name="password"]', opts.password);
    step = 'submit the login form and come back to the gateway';
    await page.click('#submit');
    const outcome = await Promise.race([
      page.waitForSelector('#whoami', { state: 'attached' }).then(() => 'ok'),
      page.waitForSelector('#message', { state: 'attached' }).then(() => 'rejected'),
      page.waitForSelector('#error', { state: 'attached' }).then(() => 'provider-error'),
    ]);
    if (outcome === 'rejected') throw new Error(`the provider rejected the login: ${await text(page, '#message')}`);
    if (outcome === 'provider-error') {
      throw new Error(`an error page at ${redact(page.url())}: ${await text(page, '#error')}`);
    }

    const result = {
      final_url: page.url(),
      whoami: await text(page, '#whoami'),
      email: await text(page, '#email'),
      role: await text(page, '#role'),
      teams: await text(page, '#teams'),
      cookies: await cookieReport(context, opts.gateway),
      navigations: navigations.splice(0),
    };

    if (opts.logout) {
      const before = await context.cookies(opts.gateway);
      step = 'log out (#logout)';
      // `#logout` is the button, or the form holding it (then its submit button is clicked).
      const target = await page.waitForSelector('#logout');
      const isForm = await target.evaluate((el) => el.tagName === 'FORM');
      const button = isForm ? await target.$('button[type="submit"], input[type="submit"], button:not([type])') : target;
      if (!button) throw new Error('#logout is a form without a submit button');
      let sent = null;
      page.on('request', async (req) => {
        if (req.method() === 'POST' && sent === null) {
          sent = {};
          const h = await req.allHeaders();
          for (const k of ['origin', 'sec-fetch-site', 'referer']) sent[k] = h[k] ?? null;
        }
      });
      await Promise.all([page.waitForNavigation(), button.click()]);
      await page.waitForLoadState('load');
      // An RP-initiated logout at the provider asks for a confirmation: give it.
      if (await page.$('#logout-confirm')) {
        step = 'confirm the logout at the provider';
        await Promise.all([page.waitForNavigation(), page.click('#logout-confirm')]);
        await page.waitForLoadState('load');
      }
      // Let any client-side or meta redirect settle.
      await page.waitForLoadState('networkidle').catch(() => {});
      result.logout = {
        final_url: page.url(),
        login_form: (await page.$('input[name="login"]')) !== null,
        sign_in_link: (await page.$('a[href^="/sso/login"]')) !== null,
        whoami: await text(page, '#whoami'),
        error: await text(page, '#error'),
        post_headers: sent,
        cookies: await cookieReport(context, opts.gateway),
        navigations: navigations.splice(0),
      };
      // The gateway's session cookie from before the logout, replayed in a fresh browser that
      // may reach the gateway only (not the provider, whose own session would sign in again):
      // the session must be dead on the server, not only forgotten by this browser.
      step = 'replay the pre-logout session cookie';
      const replay = await browser.newContext();
      replay.setDefaultTimeout(opts.timeoutMs);
      const gatewayOrigin = new URL(opts.gateway).origin;
      await replay.route('**/*', (route) => (
        new URL(route.request().url()).origin === gatewayOrigin ? route.continue() : route.abort()
      ));
      await replay.addCookies(before.filter((c) => c.name === 'portcullis_session'));
      const again = await replay.newPage();
      await again.goto(`${opts.gateway}${opts.returnTo}`).catch(() => {});
      await again.waitForLoadState('networkidle').catch(() => {});
      result.logout.replay = { final_url: again.url().split('?')[0], whoami: await text(again, '#whoami') };
      await replay.close();
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    let where = '';
    if (page) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-sso-'));
      const shot = path.join(dir, 'failure.png');
      const html = path.join(dir, 'failure.html');
      await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
      fs.writeFileSync(html, await page.content().catch(() => ''));
      where = `\n  at url: ${redact(page.url())}\n  navigations: ${navigations.join(' -> ')}\n  browser console: ${consoleLines.map(redact).join(' | ') || '(nothing)'}\n  screenshot: ${shot}\n  html: ${html}`;
    }
    throw new Error(`${step}: ${err.message.split('\n')[0]}${where}`);
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(`login.mjs: FAILED: ${err.message}\n`);
  process.exit(1);
});
