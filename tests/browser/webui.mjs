// webui.mjs — the web UI in a real browser (issue 14): starts `ah webui --port 0` with a temp
// database, drives Debian's headless Chromium with playwright-core and checks, as a user would:
//   1. launch: a scripted task launched from the New task form (Ctrl+Enter) runs to completion
//      live on its session page;
//   2. controls: pause, resume and stop from the session's card in the feed;
//   3. restart: the server is stopped and started again mid-session; the page reconnects with
//      Last-Event-ID and ends with exactly the session's events (no duplicate, none missing);
//   4. keyboard: j/Enter/Esc move through the feed and into a session and back;
//   5. no console errors and no request leaving the server during all of it.
// Screenshots of each view (light, dark, 375 px wide) are written to AH_ARTIFACTS.
//
//   AH_BIN=build/ah AH_ARTIFACTS=build/browser-artifacts node tests/browser/webui.mjs
// Optional: CHROMIUM (default /usr/bin/chromium).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LONG, checkServerLog, createTask, fail, historyTotal, launchBrowser, sessionStatus,
         startServer, stopServer, waitReady } from './harness.mjs';

const artifacts = process.env.AH_ARTIFACTS || path.join(os.tmpdir(), 'ah-browser-artifacts');

const TERMINAL = ['stopped', 'completed', 'failed', 'cancelled'];

async function shot(page, name) {
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, name + '.png') });
}

// The rows the virtualised log shows: their seqs must be consecutive and without repeats.
async function visibleSeqs(page) {
    return page.$$eval('.event-log .log-row', (els) => els.map((e) => Number(e.dataset.seq)));
}

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-browser-'));
    let server = null, context = null;
    const passed = [];
    try {
        server = await startServer(tmp);
        const port = server.port;
        const base = `http://127.0.0.1:${port}`;
        await waitReady(base);
        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();
        const errors = [], foreign = [];
        let restarting = false, refusing = false;
        page.on('pageerror', (e) => errors.push('pageerror: ' + String(e)));
        page.on('console', (m) => {
            if (m.type() !== 'error') return;
            const where = m.location()?.url || '';
            // Chromium logs every refused connection, and the 503 of a server that listens but has not
            // opened its store yet: while the server restarts that is expected.
            if (restarting && /ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED|ERR_CONNECTION_RESET|status of 503/.test(m.text()))
                return;
            // Chromium logs every 4xx answer too: the refusal the validation step asks for.
            if (refusing && /status of 400/.test(m.text()) && where.endsWith('/api/v1/tasks')) return;
            // The agent and runtime catalogues may not be served yet (501): the form falls back.
            if (/status of 501/.test(m.text()) && /\/api\/v1\/(agents|runtimes)$/.test(where)) return;
            errors.push(`console: ${m.text()} (${where})`);
        });
        page.on('request', (r) => {
            const u = r.url();
            if (!u.startsWith(base + '/') && !u.startsWith('data:')) foreign.push(u);
        });
        page.on('dialog', (d) => void d.accept());

        // ---- 1. launch from the form, watch it complete live ------------------------------------
        await page.goto(base + '/', { waitUntil: 'load' });
        await page.waitForSelector('text=No sessions yet', { timeout: LONG });
        await shot(page, 'feed-empty');
        await page.click('text=New task >> nth=0');
        await page.waitForURL(base + '/new', { timeout: LONG });
        // The form is saved as a draft while typing, and comes back from it after a reload.
        await page.fill('#f-prompt', 'Add a greeting to the README and report what changed');
        await page.waitForFunction(() => /^\?draft=draft-[0-9A-Z]{26}$/.test(location.search), null,
                                   { timeout: LONG });
        await page.waitForSelector('.saved time', { timeout: LONG });
        await page.reload({ waitUntil: 'load' });
        await page.waitForFunction(() => document.querySelector('#f-prompt')?.value
            === 'Add a greeting to the README and report what changed', null, { timeout: LONG });
        passed.push('drafts: saved while typing, restored after a reload');
        // a text field until the agent catalog has loaded, then a select (our server has one)
        await page.waitForSelector('select#f-agent', { timeout: LONG });
        await page.selectOption('#f-agent', 'scripted');
        // The server's validation message appears at its field.
        await page.selectOption('#f-repo', '__other__');
        await page.fill('#f-repo-url', 'not a url');
        refusing = true;
        await page.press('#f-prompt', 'Control+Enter');
        await page.waitForSelector('#err-repo', { timeout: LONG });
        const repoErr = await page.textContent('#err-repo');
        if (!/must be/.test(repoErr)) fail(`the repository field shows "${repoErr}"`);
        if (await page.getAttribute('#f-repo', 'aria-invalid') !== 'true') fail('#f-repo not marked invalid');
        if (!page.url().includes('/new')) fail('an invalid task left the form');
        await shot(page, 'new-task-invalid');
        refusing = false;
        await page.selectOption('#f-repo', '__none__');
        passed.push('server validation shown at its field');
        // Esc in a field leaves the field, not the form.
        await page.focus('#f-prompt');
        await page.keyboard.press('Escape');
        if (!page.url().includes('/new')) fail('Esc in the prompt left the form');
        if (await page.evaluate(() => document.activeElement?.id) === 'f-prompt') fail('Esc kept the focus in the prompt');
        await page.click('summary');
        const scenario = [
            { thought: 'Reading the repository to find the README.' },
            { tool: 'read_file', args: { path: 'README.md' }, output: '# Demo', ms: 200 },
            { sleep: 400 },
            { edit: 'README.md', content: '# Demo\n\nHello from the agent.\n' },
            { log: 'Added a greeting to README.md.' },
            { sleep: 400 },
            { thought: 'Done: one file changed.' },
        ];
        await page.fill('#f-settings', JSON.stringify({ scenario }));
        await shot(page, 'new-task');
        await page.press('#f-prompt', 'Control+Enter');
        await page.waitForURL(/\/sessions\/[0-9A-Z]{26}$/, { timeout: LONG });
        const launched = page.url().split('/').pop();
        await page.waitForSelector('.session-head .badge[data-status="completed"]', { timeout: LONG });
        await page.waitForSelector('.conn-ended', { timeout: LONG });
        const texts = await page.$$eval('.event-log .log-row .text', (els) => els.map((e) => e.textContent));
        for (const want of ['Reading the repository', 'Added a greeting', 'Done: one file changed'])
            if (!texts.some((t) => t.includes(want))) fail(`the log lacks "${want}": ${texts.join(' | ')}`);
        const n1 = Number(await page.getAttribute('.event-log', 'aria-rowcount'));
        const t1 = await historyTotal(base, launched);
        if (n1 !== t1) fail(`the page shows ${n1} events; the session has ${t1}`);
        // The terminal tab replays what the agent printed.
        await page.click('#tab-terminal');
        await page.waitForFunction(() => /scripted agent: \d+ steps/.test(
            document.querySelector('.terminal')?.textContent ?? ''), null, { timeout: LONG });
        await page.waitForSelector('text=recording complete', { timeout: LONG });
        await shot(page, 'session-terminal');
        // …and replays the recording with its timing.
        await page.click('button[aria-label="Replay at 16× speed"]');
        await page.waitForSelector('text=replay finished', { timeout: LONG });
        if (!/Done: one file changed/.test(await page.textContent('.terminal')))
            fail('the replay does not end with the agent\'s last words');
        await page.click('#tab-events');
        passed.push('terminal tab shows the PTY output and replays the recording');
        await page.click('.event-log .log-row >> nth=1');
        await page.waitForSelector('.event-detail pre');
        await shot(page, 'session');
        await page.keyboard.press('Escape');
        await page.waitForSelector('.event-detail', { state: 'detached' });
        passed.push('launch from the form, completes live');

        // A draft was saved while typing and removed at launch.
        const drafts = await (await fetch(base + '/api/v1/drafts')).json();
        if (drafts.total !== 0) fail(`drafts left after launch: ${JSON.stringify(drafts.items)}`);

        // ---- 2. pause / resume / stop from the card -------------------------------------------
        const longId = await createTask(base, 'A long refactoring', [{ log: 'starting' }, { sleep: 120000 }]);
        await page.goto(base + '/', { waitUntil: 'load' });
        const card = `.card[data-id="${longId}"]`;
        await page.waitForSelector(`${card}[data-status="running"]`, { timeout: LONG });
        await page.waitForSelector(`${card} .activity .row`, { timeout: LONG });
        await page.click(`${card} .ctl-pause`);
        await page.waitForSelector(`${card}[data-status="paused"]`, { timeout: LONG });
        if (await sessionStatus(base, longId) !== 'paused') fail('the server does not say paused');
        await page.waitForSelector(`${card} .ctl-resume`, { timeout: LONG });
        await shot(page, 'feed-paused');
        await page.click(`${card} .ctl-resume`);
        await page.waitForSelector(`${card}[data-status="running"]`, { timeout: LONG });
        await page.click(`${card} .ctl-stop`);
        await page.waitForFunction((sel) => {
            const s = document.querySelector(sel)?.getAttribute('data-status');
            return s === 'stopped' || s === 'completed' || s === 'failed' || s === 'cancelled';
        }, card, { timeout: LONG });
        if (!TERMINAL.includes(await sessionStatus(base, longId))) fail('the stop did not end the session');
        passed.push('pause, resume, stop from the card');

        // ---- 4. keyboard: j focuses the first card, Enter opens it, Esc comes back ------------
        await page.locator('body').click({ position: { x: 5, y: 300 } });
        await page.keyboard.press('j');
        const focused = await page.evaluate(() => document.activeElement?.getAttribute('data-id'));
        if (!focused) fail('j did not focus a card');
        await page.keyboard.press('Enter');
        await page.waitForURL(`${base}/sessions/${focused}`, { timeout: LONG });
        await page.waitForSelector('.session-head .badge', { timeout: LONG });
        await page.keyboard.press('Escape');
        await page.waitForURL(base + '/', { timeout: LONG });
        passed.push('keyboard j / Enter / Esc');

        // Screens in the other themes and sizes.
        await page.emulateMedia({ colorScheme: 'dark' });
        await page.waitForSelector('.card', { timeout: LONG });
        await shot(page, 'feed-dark');
        await page.setViewportSize({ width: 375, height: 800 });
        await shot(page, 'feed-375-dark');
        await page.emulateMedia({ colorScheme: 'light' });
        await shot(page, 'feed-375');
        await page.setViewportSize({ width: 1280, height: 860 });

        // ---- 3. restart the server mid-session: no duplicate or missing rows -------------------
        const ticks = [];
        for (let i = 1; i <= 40; i++) ticks.push({ log: `tick ${i}` }, { sleep: 150 });
        const tickId = await createTask(base, 'Count slowly', ticks);
        await page.goto(`${base}/sessions/${tickId}`, { waitUntil: 'load' });
        await page.waitForFunction(() => Number(document.querySelector('.event-log')
            ?.getAttribute('aria-rowcount')) >= 8, null, { timeout: LONG });
        restarting = true;
        const code = await stopServer(server.child);
        checkServerLog(server, code);
        await page.waitForSelector('.conn-reconnecting', { timeout: LONG });
        server = await startServer(tmp, port);
        await waitReady(base);
        await page.waitForSelector('.conn-live', { timeout: LONG });
        restarting = false;
        await page.waitForFunction(() => {
            const s = document.querySelector('.session-head .badge')?.getAttribute('data-status');
            return ['stopped', 'completed', 'failed', 'cancelled'].includes(s);
        }, null, { timeout: LONG });
        await page.waitForSelector('.conn-ended', { timeout: LONG });
        const n3 = Number(await page.getAttribute('.event-log', 'aria-rowcount'));
        const t3 = await historyTotal(base, tickId);
        if (n3 !== t3) fail(`after the restart the page shows ${n3} events; the session has ${t3}`);
        // Every row in view, from the top and from the bottom, is one seq after the other, in
        // DOM order once the scrolling stopped (while it goes on, rows are reused where they are
        // and only their aria-rowindex orders them), and the rows are those at that offset.
        for (const where of [0, 1e9]) {
            await page.$eval('.event-log', (el, y) => { el.scrollTop = y; }, where);
            try {
                await page.waitForFunction(([top, n]) => {
                    const rows = [...document.querySelectorAll('.event-log .log-row')];
                    const idx = rows.map((r) => Number(r.getAttribute('aria-rowindex')));
                    const seqs = rows.map((r) => Number(r.dataset.seq));
                    for (let i = 1; i < rows.length; i++)
                        if (seqs[i] !== seqs[i - 1] + 1 || idx[i] !== idx[i - 1] + 1) return false;
                    return rows.length > 0 && (top ? idx[0] === 1 : idx[idx.length - 1] === n);
                }, [where === 0, n3], { timeout: LONG });
            } catch {
                fail(`rows out of order, repeated or not those in view: ${await visibleSeqs(page)}`);
            }
        }
        await shot(page, 'session-after-restart');
        passed.push(`server restart mid-session: ${n3} events, none duplicated or missing`);

        // ---- the feed with a session at work, then cancel it from its card ------------------
        const busyId = await createTask(base, 'Refactor the parser into smaller functions', [
            { thought: 'The parser mixes tokenising and tree building; split them.' },
            { tool: 'grep', args: { pattern: 'parse_' }, output: 'src/parse.c: 14 hits', ms: 100 },
            { edit: 'src/tokens.c', content: 'int next_token(void);\n' },
            { log: 'Moved the tokeniser to src/tokens.c' },
            { sleep: 120000 },
        ]);
        await page.goto(base + '/', { waitUntil: 'load' });
        const busy = `.card[data-id="${busyId}"]`;
        await page.waitForFunction((sel) => document.querySelectorAll(`${sel} .activity .row`).length >= 3
            && document.querySelector(`${sel} .activity`)?.textContent.includes('Moved the tokeniser'),
                                   busy, { timeout: LONG });
        await shot(page, 'feed-overview');
        await page.emulateMedia({ colorScheme: 'dark' });
        await shot(page, 'feed-overview-dark');
        await page.emulateMedia({ colorScheme: 'light' });
        await page.click(`${busy} .ctl-cancel`); /* the confirm dialog is accepted */
        await page.waitForSelector(`${busy}[data-status="cancelled"]`, { timeout: LONG });
        if (await sessionStatus(base, busyId) !== 'cancelled') fail('the server does not say cancelled');
        passed.push('live activity rows on a card; cancel from the card');

        if (errors.length) fail('errors on the page:\n' + errors.join('\n'));
        if (foreign.length) fail('requests left the server:\n' + foreign.join('\n'));
        passed.push('no console errors, nothing fetched from outside');
        for (const p of passed) console.log('ok - ' + p);
    } finally {
        if (context) await context.close();
        if (server) {
            // The sessions of this test ended; the long one was stopped.
            const code = await stopServer(server.child);
            checkServerLog(server, code);
        }
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    return passed.length;
}

let finished = false;
process.on('exit', (code) => {
    if (!finished && code === 0) {
        console.error('web UI test ended without finishing (a promise never settled)');
        console.log('0 passed, 1 failed');
        process.exitCode = 1;
    }
});

main().then((n) => {
    finished = true;
    console.log(`${n} passed, 0 failed`);
}, (e) => {
    finished = true;
    console.error('web UI test failed: ' + (e && e.stack || e));
    console.log('0 passed, 1 failed');
    process.exit(1);
});
