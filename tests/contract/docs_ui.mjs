// docs_ui.mjs — /api/docs renders in a real browser: starts `ah agent access-point` on a free
// port, opens the page in headless Chromium (Debian's, driven by playwright-core) and checks
// that Swagger UI loaded the embedded document and lists every operation of api/openapi.json,
// with no script error and no request leaving the server (everything is embedded).
//
//   AH_BIN=build/ah node tests/contract/docs_ui.mjs
// Optional: CHROMIUM (default /usr/bin/chromium), AH_DOCS_SCREENSHOT=<file.png> keeps a picture.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const docPath = path.join(here, '..', '..', 'api', 'openapi.json');
const ahBin = process.env.AH_BIN || path.join(here, '..', '..', 'build', 'ah');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
                           'UndefinedBehaviorSanitizer'];

function fail(msg) {
    throw new Error(msg);
}

// Starts the server and resolves with its port, read from the JSON "listening" log line.
function startServer(tmp) {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('AH_')) delete env[k];
    Object.assign(env, {
        HOME: tmp,
        XDG_CONFIG_HOME: path.join(tmp, 'config'),
        XDG_DATA_HOME: path.join(tmp, 'data'),
        XDG_STATE_HOME: path.join(tmp, 'state'),
        XDG_RUNTIME_DIR: path.join(tmp, 'run'),
    });
    fs.mkdirSync(env.XDG_RUNTIME_DIR, { mode: 0o700 });
    const child = spawn(ahBin, ['agent', 'access-point', '--port', '0', '--db',
                                path.join(tmp, 'state.db')],
                        { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderrText = '';
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('ah did not start listening:\n' +
                                                        child.stderrText)), 30000);
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`ah exited with ${code} before listening:\n${child.stderrText}`));
        });
        let listening = false;
        child.stderr.on('data', (chunk) => {
            child.stderrText += chunk.toString();
            if (listening) return; /* keep collecting stderr for the sanitizer check */
            for (const line of child.stderrText.split('\n')) {
                try {
                    const rec = JSON.parse(line);
                    if (rec.msg === 'listening' && rec.port) {
                        listening = true;
                        clearTimeout(timer);
                        child.removeAllListeners('exit');
                        resolve({ child, port: rec.port });
                        return;
                    }
                } catch { /* not a complete JSON line yet */ }
            }
        });
    });
}

function stopServer(child) {
    return new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
        child.on('exit', (code, signal) => { clearTimeout(timer); resolve(signal || code); });
        child.kill('SIGTERM');
    });
}

async function main() {
    const doc = JSON.parse(fs.readFileSync(docPath, 'utf8'));
    let operations = 0;
    for (const item of Object.values(doc.paths))
        for (const m of ['get', 'put', 'post', 'delete', 'patch'])
            if (item[m]) operations++;

    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-docs-ui-'));
    let server = null, context = null;
    try {
        server = await startServer(tmp);
        const base = `http://127.0.0.1:${server.port}`;
        // launchPersistentContext passes --user-data-dir itself: a fresh profile per run.
        context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
            executablePath: chromiumPath,
            headless: true,
            args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                   '--no-first-run', '--disable-background-networking',
                   '--disable-component-update', '--disable-sync'],
        });
        const page = context.pages()[0] || await context.newPage();
        const errors = [], foreign = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
        page.on('request', (r) => {
            const u = r.url();
            if (!u.startsWith(base + '/') && !u.startsWith('data:')) foreign.push(u);
        });

        // Swagger UI fetches the OIDC scheme's discovery document on load. No identity provider
        // is configured here (the server answers 404), so answer as a configured issuer would.
        await page.route('**/.well-known/openid-configuration', (route) => route.fulfill({
            json: {
                issuer: base,
                authorization_endpoint: base + '/oidc/authorize',
                token_endpoint: base + '/oidc/token',
                jwks_uri: base + '/oidc/jwks',
                response_types_supported: ['code'],
                grant_types_supported: ['authorization_code'],
            },
        }));
        const resp = await page.goto(base + '/api/docs', { waitUntil: 'load', timeout: 60000 });
        if (!resp || resp.status() !== 200) fail(`/api/docs answered ${resp && resp.status()}`);
        await page.waitForSelector('.opblock', { timeout: 60000 });
        // Swagger UI renders tag by tag; wait until the count settles at the document's.
        await page.waitForFunction((n) => document.querySelectorAll('.opblock').length >= n,
                                   operations, { timeout: 60000 }).catch(() => {});
        const shown = await page.$$eval('.opblock', (els) => els.length);
        const title = await page.$eval('.info .title', (el) => el.textContent);
        const specErrors = await page.$$eval('.errors-wrapper', (els) =>
            els.map((e) => e.textContent.trim()).filter(Boolean));
        const paths = await page.$$eval('.opblock-summary-path', (els) =>
            els.map((e) => e.getAttribute('data-path')));

        if (process.env.AH_DOCS_SCREENSHOT)
            await page.screenshot({ path: process.env.AH_DOCS_SCREENSHOT, fullPage: false });

        if (!title.includes(doc.info.title)) fail(`title is "${title}"`);
        if (shown !== operations)
            fail(`the page lists ${shown} operations; the document has ${operations}`);
        if (!paths.includes('/api/v1/tasks') || !paths.includes('/api/v1/sessions/{id}/events'))
            fail('expected operations are not listed: ' + paths.slice(0, 10).join(', '));
        if (specErrors.length) fail('Swagger UI reports errors: ' + specErrors.join(' | '));
        if (errors.length) fail('script errors on the page:\n' + errors.join('\n'));
        if (foreign.length) fail('requests left the server:\n' + foreign.join('\n'));
        console.log(`docs UI: "${title.trim()}" lists ${shown} operations`);
    } finally {
        if (context) await context.close();
        if (server) {
            const code = await stopServer(server.child);
            const text = server.child.stderrText;
            for (const m of SANITIZER_MARKERS)
                if (text.includes(m))
                    fail('sanitizer report in ah\'s stderr:\n' + text.slice(-6000));
            if (code !== 0) fail(`ah exited with ${code}:\n${text.slice(-4000)}`);
        }
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

let finished = false;
process.on('exit', (code) => {
    if (!finished && code === 0) {
        console.error('docs UI test ended without finishing (a promise never settled)');
        console.log('0 passed, 1 failed');
        process.exitCode = 1;
    }
});

main().then(() => {
    finished = true;
    console.log('1 passed, 0 failed');
}, (e) => {
    finished = true;
    console.error('docs UI test failed: ' + (e && e.stack || e));
    console.log('0 passed, 1 failed');
    process.exit(1);
});
