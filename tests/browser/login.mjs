// login.mjs — signing in to the web UI with an API key, in a real browser (issue 14, with the
// API keys of issue 13): a real `ah webui`, keys made offline with `ah admin api-key create`.
//   1. local mode (no key configured): no sign-in page, the feed answers;
//   2. once a key exists the next load shows the sign-in page (the API answers 401);
//   3. a wrong key is refused with the server's Problem (title and detail);
//   4. the right key: the feed, a session's live event stream and its terminal work with it;
//      the header names the key's id, never the secret;
//   5. a reload keeps the tab signed in; sign out forgets the key (storage cleared) and shows
//      the sign-in page again;
//   6. a viewer key can read but the server's refusal of a control (403) shows as its detail;
//   7. a server that trusts a JWT issuer (--jwks): an expired token is refused with the Problem,
//      a valid one signs in and the menu names its subject;
//   8. no console errors beyond the refusals asked for.
// Screenshot: login (AH_ARTIFACTS).
//
//   AH_BIN=build/ah AH_ARTIFACTS=build/browser-artifacts node tests/browser/login.mjs
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LONG, checkServerLog, fail, launchBrowser, startServer, stopServer,
         waitReady } from './harness.mjs';

const artifacts = process.env.AH_ARTIFACTS || path.join(os.tmpdir(), 'ah-browser-artifacts');
const ahBin = process.env.AH_BIN || 'build/ah';

function makeKey(tmp, role) {
    const out = execFileSync(ahBin, ['admin', 'api-key', 'create', '--role', role, '--tenant', 'default',
                                     '--db', path.join(tmp, 'state.db'), '--json'],
                             { env: { PATH: process.env.PATH, HOME: tmp }, encoding: 'utf8' });
    return JSON.parse(out);
}

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-login-'));
    let server = null, server2 = null, context = null;
    const passed = [];
    try {
        server = await startServer(tmp);
        const base = `http://127.0.0.1:${server.port}`;
        await waitReady(base);
        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();
        const errors = [];
        let refusals = false;
        page.on('pageerror', (e) => errors.push('pageerror: ' + String(e)));
        page.on('console', (m) => {
            if (m.type() !== 'error') return;
            // Chromium logs each 401/403 answer: the steps that ask for them expect them.
            if (refusals && /status of (401|403)/.test(m.text())) return;
            errors.push(`console: ${m.text()} (${m.location()?.url || ''})`);
        });

        // ---- 1. local mode --------------------------------------------------------------------
        await page.goto(base + '/', { waitUntil: 'load' });
        await page.waitForSelector('text=No sessions yet', { timeout: LONG });
        if (await page.$('#login-key')) fail('local mode asks for a key');
        passed.push('local mode: no sign-in');

        // ---- 2. a key exists: sign-in page ----------------------------------------------------
        // from here the open feed's own reads may be refused (a busy machine lets it refresh
        // between the key's creation and the reload below)
        refusals = true;
        const admin = makeKey(tmp, 'admin');
        const viewer = makeKey(tmp, 'viewer');
        // the server notices an offline key within a second: wait until the API asks for one
        const deadline = Date.now() + LONG;
        while ((await fetch(base + '/api/v1/sessions')).status !== 401) {
            if (Date.now() > deadline) fail('the server never asked for credentials');
            await new Promise((r) => setTimeout(r, 50));
        }
        await page.reload({ waitUntil: 'load' });
        await page.waitForSelector('#login-key', { timeout: LONG });
        await page.emulateMedia({ colorScheme: 'light' });
        passed.push('credentials required: the sign-in page');

        // ---- 3. a wrong key -------------------------------------------------------------------
        const wrong = `ahk_${admin.id}_${'0'.repeat(64)}`;
        const pr = await fetch(base + '/api/v1/sessions?perPage=1', { headers: { Authorization: `ApiKey ${wrong}` } });
        const problem = await pr.json();
        await page.fill('#login-key', wrong);
        await page.click('button:text-is("Sign in")');
        await page.waitForSelector('#login-error', { timeout: LONG });
        const shown = (await page.textContent('#login-error')).trim();
        if (shown !== `${problem.title}: ${problem.detail}`) fail(`the refusal reads "${shown}"; the Problem is ${JSON.stringify(problem)}`);
        fs.mkdirSync(artifacts, { recursive: true });
        await page.screenshot({ path: path.join(artifacts, 'login.png') });
        passed.push(`a wrong key shows the Problem: "${shown}"`);

        // ---- 4. the right key -----------------------------------------------------------------
        await page.fill('#login-key', admin.key);
        await page.click('button:text-is("Sign in")');
        await page.waitForSelector('text=No sessions yet', { timeout: LONG });
        const label = await page.textContent('.user-menu');
        if (!label.includes(admin.id) || label.includes(admin.key.split('_')[2])) fail(`the menu reads "${label}"`);
        const r = await fetch(base + '/api/v1/tasks', {
            method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `ApiKey ${admin.key}` },
            body: JSON.stringify({ prompt: 'Signed in', repo: { mode: 'none' }, runtime: { type: 'local' },
                                   agents: [{ type: 'scripted', settings: { scenario: [
                                       { log: 'first' }, { sleep: 300 }, { log: 'seen by a signed-in page' }] } }] }) });
        if (r.status !== 201) fail(`POST /tasks answered ${r.status}`);
        const id = (await r.json()).id;
        await page.waitForSelector(`.card[data-id="${id}"]`, { timeout: LONG });
        await page.click(`.card[data-id="${id}"] .card-title`);
        await page.waitForSelector('.session-head .badge[data-status="completed"]', { timeout: LONG });
        await page.waitForSelector('text=seen by a signed-in page', { timeout: LONG });
        await page.click('#tab-terminal');
        await page.waitForSelector('text=recording complete', { timeout: LONG });
        passed.push('signed in: feed, live events and terminal carry the key');

        // ---- 5. reload, then sign out ---------------------------------------------------------
        await page.reload({ waitUntil: 'load' });
        await page.waitForSelector('.session-head .badge[data-status="completed"]', { timeout: LONG });
        if (await page.$('#login-key')) fail('a reload lost the sign-in');
        await page.click('button.sign-out');
        await page.waitForSelector('#login-key', { timeout: LONG });
        const left = await page.evaluate(() => [sessionStorage.getItem('ah.apiKey'), localStorage.getItem('ah.apiKey')]);
        if (left.some((v) => v !== null)) fail(`signing out left the key stored: ${left}`);
        await page.reload({ waitUntil: 'load' });
        await page.waitForSelector('#login-key', { timeout: LONG });
        passed.push('a reload keeps the sign-in; sign out forgets the key');

        // ---- 6. a viewer reads, and is refused a control --------------------------------------
        await page.fill('#login-key', viewer.key);
        await page.click('button:text-is("Sign in")');
        await page.waitForSelector('.session-head .badge', { timeout: LONG });
        await page.goto(base + '/new', { waitUntil: 'load' });
        await page.fill('#f-prompt', 'a viewer may not launch');
        // a text field until the agent catalog has loaded, then a select (our server has one)
        await page.waitForSelector('select#f-agent', { timeout: LONG });
        await page.selectOption('#f-agent', 'scripted');
        await page.press('#f-prompt', 'Control+Enter');
        // the launch's refusal; the draft's autosave may be refused (and toasted) first, in
        // either order, so the toast is picked by what it refuses, not by being the first one
        const refusal = page.locator('.toast-error', { hasText: 'POST /api/v1/tasks needs the operator role' });
        try {
            await refusal.first().waitFor({ timeout: LONG });
        } catch (e) {
            fail(`no refusal toast for the launch; toasts: ${JSON.stringify(await page.locator('.toast-error').allTextContents())}`);
        }
        const toast = await refusal.first().textContent();
        passed.push(`a viewer is refused a launch: "${toast.trim().replace(/×$/, '')}"`);

        // ---- 7. a JWT from a trusted issuer (RS256, signed here with node's crypto) ------------
        const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
        const jwks = path.join(tmp, 'jwks.json');
        fs.writeFileSync(jwks, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig' }] }));
        const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const token = (over) => {
            const now = Math.floor(Date.now() / 1000);
            const body = `${b64({ alg: 'RS256', typ: 'JWT', kid: 'k1' })}.${b64({
                iss: 'https://issuer.test', aud: 'agent-harbor', sub: 'alice', iat: now, exp: now + 600,
                tenant: 'default', roles: ['operator'], ...over })}`;
            return `${body}.${crypto.sign('sha256', Buffer.from(body), privateKey).toString('base64url')}`;
        };
        const jwtTmp = path.join(tmp, 'jwt');
        fs.mkdirSync(jwtTmp);
        server2 = await startServer(jwtTmp, 0, ['--jwks', jwks, '--jwt-issuer', 'https://issuer.test',
                                                '--jwt-audience', 'agent-harbor']);
        const base2 = `http://127.0.0.1:${server2.port}`;
        await waitReady(base2);
        await page.goto(base2 + '/', { waitUntil: 'load' });
        await page.waitForSelector('#login-key', { timeout: LONG });
        const expired = token({ exp: Math.floor(Date.now() / 1000) - 3600 });
        const p2 = await (await fetch(base2 + '/api/v1/sessions?perPage=1', { headers: { Authorization: `Bearer ${expired}` } })).json();
        await page.fill('#login-key', expired);
        await page.click('button:text-is("Sign in")');
        await page.waitForSelector('#login-error', { timeout: LONG });
        const shown2 = (await page.textContent('#login-error')).trim();
        if (shown2 !== `${p2.title}: ${p2.detail}`) fail(`the refusal reads "${shown2}"; the Problem is ${JSON.stringify(p2)}`);
        await page.fill('#login-key', token({}));
        await page.click('button:text-is("Sign in")');
        await page.waitForSelector('text=No sessions yet', { timeout: LONG });
        if ((await page.textContent('.user-menu')).trim() !== 'aliceSign out') fail(`the menu reads "${await page.textContent('.user-menu')}"`);
        passed.push(`a JWT signs in (an expired one: "${shown2}")`);

        if (errors.length) fail('errors on the page:\n' + errors.join('\n'));
        passed.push('no console errors');
        for (const p of passed) console.log('ok - ' + p);
    } finally {
        if (context) await context.close();
        for (const s of [server, server2]) {
            if (!s) continue;
            const code = await stopServer(s.child);
            checkServerLog(s, code);
        }
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    return passed.length;
}

main().then((n) => {
    console.log(`${n} passed, 0 failed`);
}, (e) => {
    console.error('login test failed: ' + (e && e.stack || e));
    console.log('0 passed, 1 failed');
    process.exit(1);
});
