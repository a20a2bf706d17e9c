// oidc.mjs — a person signs in to the web UI through the identity provider, in a real browser
// (issue 13 item 3, issue 14 "Login … and a user menu with logout"): a real glewlwyd on loopback
// (tests/integration/oidc_harness.py, its own login page), a real `ah webui` trusting it.
//   1. the sign-in page offers "Sign in with glewlwyd" (the API answers 401);
//   2. the button goes to glewlwyd's login page; the person types their password there and
//      continues; the browser comes back signed in (authorization code + PKCE, state, nonce);
//   3. the user menu names the person and the role from the ID token; the feed loads through the
//      session cookie, which the page's scripts cannot read (HttpOnly, SameSite=Lax);
//   4. a change through the cookie without the CSRF token is refused, with it accepted;
//   5. sign out: the sign-in page again, the cookie's session refused by the API;
//   6. no console errors beyond the refusals asked for.
// Screenshots: login-oidc, feed-oidc (AH_ARTIFACTS).
//
//   AH_BIN=build/ah AH_ARTIFACTS=build/browser-artifacts node tests/browser/oidc.mjs
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LONG, checkServerLog, fail, launchBrowser, startServer, stopServer,
         waitReady } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const artifacts = process.env.AH_ARTIFACTS || path.join(os.tmpdir(), 'ah-browser-artifacts');

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

// glewlwyd through the Python harness: one JSON line when ready; it stops when stdin closes.
async function startProvider(redirectUri, users) {
    const child = spawn('python3', [path.join(here, '..', 'integration', 'oidc_harness.py'), redirectUri],
                        { env: { ...process.env, USERS_JSON: JSON.stringify(users) },
                          stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => { err += c.toString(); });
    const line = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('glewlwyd did not start:\n' + err)), 2 * LONG);
        child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`the provider exited with ${code}:\n${err}`)); });
        readline.createInterface({ input: child.stdout }).once('line', (l) => { clearTimeout(timer); resolve(l); });
    });
    child.removeAllListeners('exit');
    return { child, ...JSON.parse(line) };
}

function stopProvider(p) {
    return new Promise((resolve) => {
        if (!p || p.child.exitCode !== null) return resolve();
        const timer = setTimeout(() => p.child.kill('SIGKILL'), LONG);
        p.child.on('exit', () => { clearTimeout(timer); resolve(); });
        p.child.stdin.end();
    });
}

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-oidc-'));
    let server = null, provider = null, context = null;
    const passed = [];
    try {
        const port = await freePort();
        const base = `http://127.0.0.1:${port}`;
        provider = await startProvider(`${base}/api/v1/auth/oidc/callback`,
                                       { alice: ['pw-alice-1', 'acme', 'operator'] });
        server = await startServer(tmp, port, [
            '--oidc-issuer', provider.issuer, '--oidc-client-id', provider.clientId,
            '--oidc-client-secret-file', provider.clientSecretFile,
            '--oidc-redirect-uri', `${base}/api/v1/auth/oidc/callback`,
            '--oidc-provider-name', 'glewlwyd', '--oidc-claim-user', 'name']);
        await waitReady(base);
        const deadline = Date.now() + LONG;
        while (!(await (await fetch(base + '/api/v1/auth/session')).json()).oidc?.ready) {
            if (Date.now() > deadline) fail('the server never read the provider\'s discovery document');
            await new Promise((r) => setTimeout(r, 100));
        }

        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();
        const errors = [];
        // only the web UI's own errors count (glewlwyd's pages ask for translations it lacks)
        page.on('pageerror', (e) => { if (page.url().startsWith(base)) errors.push('pageerror: ' + String(e)); });
        page.on('console', (m) => {
            if (m.type() !== 'error' || !(m.location()?.url || page.url()).startsWith(base)) return;
            // Chromium logs each 401/403 answer: the steps that ask for them expect them.
            if (/status of (401|403)/.test(m.text())) return;
            errors.push(`console: ${m.text()} (${m.location()?.url || ''})`);
        });

        // ---- 1. the sign-in page offers the provider --------------------------------------------
        await page.emulateMedia({ colorScheme: 'light' });
        await page.goto(base + '/', { waitUntil: 'load' });
        const sso = await page.waitForSelector('a.sso', { timeout: LONG });
        if ((await sso.innerText()).trim() !== 'Sign in with glewlwyd') fail(`the button says ${await sso.innerText()}`);
        if (!await page.$('#login-key')) fail('the API key field is gone');
        fs.mkdirSync(artifacts, { recursive: true });
        await page.screenshot({ path: path.join(artifacts, 'login-oidc.png') });
        passed.push('sign-in page: "Sign in with glewlwyd"');

        // ---- 2. at the provider and back --------------------------------------------------------
        await sso.click();
        await page.waitForSelector('#username', { timeout: LONG });
        if (!page.url().startsWith(provider.base + '/login.html')) fail(`not at glewlwyd: ${page.url()}`);
        await page.fill('#username', 'alice');
        await page.fill('#password', 'pw-alice-1');
        await page.click('#loginbut');
        const cont = await page.waitForSelector('button:has-text("Continue")', { timeout: LONG });
        await cont.click();
        await page.waitForURL((u) => u.href.startsWith(base + '/'), { timeout: LONG });
        passed.push('signed in at glewlwyd, back at the web UI');

        // ---- 3. signed in: the menu, the feed, the cookie ----------------------------------------
        const menu = await page.waitForSelector('.user-menu', { timeout: LONG });
        const who = (await menu.innerText()).replace(/\s+/g, ' ');
        if (!who.includes('Alice') || !who.includes('operator')) fail(`the user menu says ${who}`);
        await page.waitForSelector('text=No sessions yet', { timeout: LONG });
        if (await page.$('a.sso')) fail('still on the sign-in page');
        const cookies = await context.cookies(base);
        const c = cookies.find((k) => k.name === 'ah_session');
        if (!c) fail('no session cookie');
        if (!c.httpOnly || c.sameSite !== 'Lax') fail(`cookie attributes: ${JSON.stringify({ ...c, value: '…' })}`);
        if (cookies.some((k) => k.name === 'ah_oidc_state' && k.value)) fail('the state cookie outlived the sign-in');
        const seen = await page.evaluate(() => document.cookie);
        if (seen.includes('ah_session')) fail('the page\'s scripts can read the session cookie');
        await page.screenshot({ path: path.join(artifacts, 'feed-oidc.png') });
        passed.push('user menu "Alice · operator", feed through the HttpOnly cookie');

        // ---- 4. CSRF ----------------------------------------------------------------------------
        const csrf = await page.evaluate(async () => {
            const info = await (await fetch('/api/v1/auth/session')).json();
            const post = (headers) => fetch('/api/v1/drafts', {
                method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
                body: JSON.stringify({ prompt: 'from the browser session' }) }).then((r) => r.status);
            return { without: await post({}), with: await post({ 'X-CSRF-Token': info.csrfToken }) };
        });
        if (csrf.without !== 403 || csrf.with !== 201) fail(`CSRF: ${JSON.stringify(csrf)}`);
        passed.push('a change needs the CSRF token (403 without, 201 with)');

        // ---- 5. sign out ------------------------------------------------------------------------
        await page.click('.user-menu button.sign-out');
        await page.waitForSelector('a.sso', { timeout: LONG });
        const after = await page.evaluate(async () => ({
            api: (await fetch('/api/v1/sessions')).status,
            session: (await (await fetch('/api/v1/auth/session')).json()).status,
        }));
        if (after.api !== 401 || !['none', 'signedOut'].includes(after.session)) fail(`after sign-out: ${JSON.stringify(after)}`);
        if (c && (await fetch(base + '/api/v1/sessions', { headers: { Cookie: `ah_session=${c.value}` } })).status !== 401)
            fail('the signed-out cookie still opens the API');
        passed.push('sign out: the sign-in page again, the old cookie refused');

        if (errors.length) fail('console errors:\n' + errors.join('\n'));
        passed.push('no console errors');
    } finally {
        if (context) await context.close();
        if (server) {
            const code = await stopServer(server.child);
            checkServerLog(server, code);
        }
        await stopProvider(provider);
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    for (const p of passed) console.log('ok -', p);
}

main().catch((e) => {
    console.error(e.stack || String(e));
    process.exit(1);
});
