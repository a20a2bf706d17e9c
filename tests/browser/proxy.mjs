// proxy.mjs — `ah webui --remote-server URL` in a real browser (issue 14, M17): a real access
// point (`ah agent access-point`) and a second `ah webui` proxying to it; headless Chromium uses
// only the proxy's address and checks, as a user would:
//   1. a task launched from the form runs to completion live, with exactly the upstream's events;
//   2. its Files tab shows the agent's edit (the files-and-diffs endpoints through the proxy);
//   3. the access point restarts mid-session: the page reconnects through the proxy with
//      Last-Event-ID and ends with every event once;
//   4. nothing is fetched from anywhere but the proxy, and no console errors.
// A screenshot (proxy-session) goes to AH_ARTIFACTS.
//
//   AH_BIN=build/ah AH_ARTIFACTS=build/browser-artifacts node tests/browser/proxy.mjs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LONG, checkServerLog, createTask, fail, historyTotal, launchBrowser, startServer,
         stopServer, waitReady } from './harness.mjs';

const artifacts = process.env.AH_ARTIFACTS || path.join(os.tmpdir(), 'ah-browser-artifacts');
const AP = ['agent', 'access-point'];

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-proxy-'));
    const upTmp = path.join(tmp, 'upstream'), pxTmp = path.join(tmp, 'proxy');
    fs.mkdirSync(upTmp);
    fs.mkdirSync(pxTmp);
    let upstream = null, px = null, context = null;
    const passed = [];
    try {
        upstream = await startServer(upTmp, 0, [], AP);
        const upBase = `http://127.0.0.1:${upstream.port}`;
        await waitReady(upBase);
        px = await startServer(pxTmp, 0, ['--remote-server', upBase]);
        const base = `http://127.0.0.1:${px.port}`;
        await waitReady(base); /* readyz answered by the upstream, through the proxy */

        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();
        const errors = [], foreign = [];
        let restarting = false;
        page.on('pageerror', (e) => errors.push('pageerror: ' + String(e)));
        page.on('console', (m) => {
            if (m.type() !== 'error') return;
            const where = m.location()?.url || '';
            // While the access point restarts the proxy answers 502 (and 503 until its store
            // is open): the page retries, Chromium logs each.
            if (restarting && /status of (502|503)|ERR_INCOMPLETE_CHUNKED|ERR_EMPTY_RESPONSE/.test(m.text())) return;
            if (/status of 501/.test(m.text()) && /\/api\/v1\/(agents|runtimes)$/.test(where)) return;
            errors.push(`console: ${m.text()} (${where})`);
        });
        page.on('request', (r) => {
            const u = r.url();
            if (!u.startsWith(base + '/') && !u.startsWith('data:')) foreign.push(u);
        });

        // ---- 1. launch from the form through the proxy -----------------------------------------
        await page.goto(base + '/new', { waitUntil: 'load' });
        await page.fill('#f-prompt', 'Write the greeting through the proxy');
        // a text field until the agent catalog has loaded, then a select (our server has one)
        await page.waitForSelector('select#f-agent', { timeout: LONG });
        await page.selectOption('#f-agent', 'scripted');
        await page.click('summary');
        await page.fill('#f-settings', JSON.stringify({ scenario: [
            { thought: 'Writing the greeting.' },
            { edit: 'hello.txt', content: 'hello through the proxy\n' },
            { log: 'greeting written' },
        ] }));
        await page.press('#f-prompt', 'Control+Enter');
        await page.waitForURL(/\/sessions\/[0-9A-Z]{26}$/, { timeout: LONG });
        const id = page.url().split('/').pop();
        await page.waitForSelector('.session-head .badge[data-status="completed"]', { timeout: LONG });
        await page.waitForSelector('.conn-ended', { timeout: LONG });
        const n1 = Number(await page.getAttribute('.event-log', 'aria-rowcount'));
        const t1 = await historyTotal(upBase, id); /* asked of the upstream directly */
        if (n1 !== t1) fail(`the page shows ${n1} events; the access point has ${t1}`);
        passed.push(`a task launched through the proxy completes live (${n1} events)`);

        // ---- 2. its files and diff, through the proxy -----------------------------------------
        await page.click('#tab-files');
        await page.waitForSelector('.file-row[data-path="hello.txt"][data-status="added"]', { timeout: LONG });
        await page.waitForFunction(() => [...document.querySelectorAll('table.split td.d-add')]
            .some((td) => td.textContent === 'hello through the proxy'), null, { timeout: LONG });
        await page.click('#tab-events');
        fs.mkdirSync(artifacts, { recursive: true });
        await page.screenshot({ path: path.join(artifacts, 'proxy-session.png') });
        passed.push('the files tab shows the edit through the proxy');

        // ---- 3. the access point restarts mid-session ------------------------------------------
        const ticks = [];
        for (let i = 1; i <= 40; i++) ticks.push({ log: `tick ${i}` }, { sleep: 150 });
        const tickId = await createTask(base, 'Count slowly behind a proxy', ticks);
        await page.goto(`${base}/sessions/${tickId}`, { waitUntil: 'load' });
        await page.waitForFunction(() => Number(document.querySelector('.event-log')
            ?.getAttribute('aria-rowcount')) >= 8, null, { timeout: LONG });
        restarting = true;
        const code = await stopServer(upstream.child);
        checkServerLog(upstream, code);
        await page.waitForSelector('.conn-reconnecting', { timeout: LONG });
        upstream = await startServer(upTmp, Number(new URL(upBase).port), [], AP);
        await waitReady(upBase);
        await page.waitForSelector('.conn-live', { timeout: LONG });
        restarting = false;
        await page.waitForSelector('.conn-ended', { timeout: LONG });
        const n3 = Number(await page.getAttribute('.event-log', 'aria-rowcount'));
        const t3 = await historyTotal(upBase, tickId);
        if (n3 !== t3) fail(`after the restart the page shows ${n3} events; the access point has ${t3}`);
        const seqs = await page.$$eval('.event-log .log-row', (els) => els.map((e) => Number(e.dataset.seq)));
        for (let i = 1; i < seqs.length; i++)
            if (seqs[i] !== seqs[i - 1] + 1) fail(`rows out of order or repeated: ${seqs}`);
        passed.push(`access point restarted behind the proxy: ${n3} events, none duplicated or missing`);

        if (errors.length) fail('errors on the page:\n' + errors.join('\n'));
        if (foreign.length) fail('requests left the proxy:\n' + foreign.join('\n'));
        passed.push('no console errors; every request went to the proxy');
        for (const p of passed) console.log('ok - ' + p);
    } finally {
        if (context) await context.close();
        for (const s of [px, upstream]) {
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
    console.error('proxy test failed: ' + (e && e.stack || e));
    console.log('0 passed, 1 failed');
    process.exit(1);
});
