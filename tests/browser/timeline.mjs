// timeline.mjs — the session page's Timeline tab in a real browser (issue 14): a real `ah webui`,
// a scripted agent that runs tools and edits files with pauses (so each edit gets its own
// snapshot), and headless Chromium checking, as a user would:
//   1. every moment and snapshot GET …/timeline answers is on the scale and in the list;
//   2. "View files here" on a snapshot seeks there (POST …/seek) and shows that point's files:
//      the first edit only, as GET …/files?to=<snapshot> lists them;
//   3. the slider at 0 seeks to the base snapshot: nothing changed yet;
//   4. a moment marked from the form appears (and the API has it);
//   5. while the session runs, a new tool boundary appears without a reload;
//   6. "Branch from here" on a snapshot starts a session whose workspace is that snapshot and
//      whose history is inherited; the parent lists it;
//   7. no console errors.
// Screenshot: timeline (AH_ARTIFACTS).
//
//   AH_BIN=build/ah AH_ARTIFACTS=build/browser-artifacts node tests/browser/timeline.mjs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LONG, checkServerLog, fail, launchBrowser, startServer, stopServer, unmountUnder,
         waitReady } from './harness.mjs';

const artifacts = process.env.AH_ARTIFACTS || path.join(os.tmpdir(), 'ah-browser-artifacts');

async function json(base, p, init) {
    const r = await fetch(base + '/api/v1' + p, init);
    if (!r.ok) fail(`${p} answered ${r.status}: ${await r.text()}`);
    return r.json();
}

const post = (body) => ({ method: 'POST', headers: { 'Content-Type': 'application/json' },
                          body: JSON.stringify(body) });

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-timeline-'));
    let server = null, context = null;
    const passed = [];
    try {
        server = await startServer(tmp);
        const base = `http://127.0.0.1:${server.port}`;
        await waitReady(base);
        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();
        const errors = [];
        page.on('pageerror', (e) => errors.push('pageerror: ' + String(e)));
        page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });

        const task = await json(base, '/tasks', post({
            prompt: 'Build up a history', repo: { mode: 'none' }, runtime: { type: 'local' },
            agents: [{ type: 'scripted', settings: { scenario: [
                { tool: 'read_file', args: { path: 'plan.md' }, output: 'the plan', ms: 50 },
                { edit: 'first.txt', content: 'one\n' },
                { sleep: 600 },
                { tool: 'grep', args: { q: 'one' }, output: 'first.txt:1', ms: 50 },
                { sleep: 600 },
                { edit: 'second.txt', content: 'two\n' },
                { sleep: 600 },
                { tool: 'ls', args: {}, output: 'first.txt second.txt', ms: 50 },
                { log: 'history written' },
                { wait_prompt: true },
                { tool: 'cat', args: { path: 'second.txt' }, output: 'two', ms: 50 },
                { log: 'all done' },
            ] } }] }));
        const id = task.id;

        // ---- 1. the timeline as the API answers it ---------------------------------------------
        await page.goto(`${base}/sessions/${id}`, { waitUntil: 'load' });
        await page.waitForSelector('text=history written', { timeout: LONG });
        await page.click('#tab-timeline');
        // the last tool boundary (ls) is on the page once its snapshot is stored
        await page.waitForFunction(() => [...document.querySelectorAll('.tl-item[data-kind="moment"] .tl-label')]
            .some((e) => e.textContent === 'ls'), null, { timeout: LONG });
        const tl = await json(base, `/sessions/${id}/timeline`);
        const want = [...tl.moments.map((m) => m.id), ...tl.fsSnapshots.map((s) => s.id)].sort();
        const listed = (await page.$$eval('.tl-item', (els) => els.map((e) => e.dataset.id))).sort();
        const marked = (await page.$$eval('.tl-marker', (els) => els.map((e) => e.dataset.id))).sort();
        if (JSON.stringify(listed) !== JSON.stringify(want)) fail(`the list shows ${listed}; the API has ${want}`);
        if (JSON.stringify(marked) !== JSON.stringify(want)) fail(`the scale shows ${marked}; the API has ${want}`);
        const labels = await page.$$eval('.tl-item[data-kind="moment"] .tl-label', (els) => els.map((e) => e.textContent));
        for (const tool of ['read_file', 'grep', 'ls'])
            if (!labels.includes(tool)) fail(`no moment for ${tool}: ${labels}`);
        passed.push(`timeline: ${tl.moments.length} moments and ${tl.fsSnapshots.length} snapshots, as the API answers`);

        // ---- 2. seek to the snapshot that holds only the first edit ----------------------------
        let first = null;
        for (const s of tl.fsSnapshots) {
            const f = await json(base, `/sessions/${id}/files?to=${s.id}`);
            const paths = f.items.map((x) => x.path).join(',');
            if (paths === 'first.txt') { first = s; break; }
        }
        if (!first) fail(`no snapshot holds first.txt alone: ${JSON.stringify(tl.fsSnapshots)}`);
        await page.click(`.tl-item[data-id="${first.id}"] button`);
        await page.waitForSelector(`.seek-state code:text-is("${first.id}")`, { timeout: LONG });
        await page.waitForSelector('.tl-seek .file-row[data-path="first.txt"]', { timeout: LONG });
        await page.waitForFunction(() => document.querySelector('.tl-seek .files-summary')?.textContent.trim()
            === '1 file changed +1 −0', null, { timeout: LONG });
        if (await page.$('.tl-seek .file-row[data-path="second.txt"]')) fail('the seek shows a later file');
        if (!(await page.getAttribute(`.tl-item[data-id="${first.id}"]`, 'class')).includes('current'))
            fail('the chosen snapshot is not marked');
        await page.waitForSelector('.tl-seek table.split', { timeout: LONG });
        fs.mkdirSync(artifacts, { recursive: true });
        await page.screenshot({ path: path.join(artifacts, 'timeline.png'), fullPage: true });
        passed.push('seek to a snapshot shows that point\'s files');

        // ---- 3. the slider at 0: the base ------------------------------------------------------
        const baseSnap = tl.fsSnapshots.find((s) => s.kind === 'base');
        await page.$eval('.tl-slider', (el) => {
            el.value = '0';
            el.dispatchEvent(new Event('input', { bubbles: true }));
            el.dispatchEvent(new Event('change', { bubbles: true }));
        });
        await page.waitForSelector(`.seek-state code:text-is("${baseSnap.id}")`, { timeout: LONG });
        await page.waitForFunction(() => document.querySelector('.tl-seek .files-summary')?.textContent.trim()
            === 'No file changed yet.', null, { timeout: LONG });
        passed.push('the slider seeks by time (0: the base snapshot)');

        // ---- 4. mark a moment ------------------------------------------------------------------
        await page.fill('input[aria-label="Moment name"]', 'worth a look');
        await page.click('button:text-is("Mark moment")');
        await page.waitForSelector('.tl-item[data-kind="moment"] .tl-label:text-is("worth a look")', { timeout: LONG });
        const tl2 = await json(base, `/sessions/${id}/timeline`);
        if (!tl2.moments.some((m) => m.label === 'worth a look' && m.kind === 'manual')) fail('the API lacks the moment');
        passed.push('a moment marked from the form');

        // ---- 5. live: the agent goes on, a new boundary appears --------------------------------
        await json(base, `/sessions/${id}/prompt`, post({ prompt: 'go on' }));
        await page.waitForFunction(() => [...document.querySelectorAll('.tl-item[data-kind="moment"] .tl-label')]
            .some((e) => e.textContent === 'cat'), null, { timeout: LONG });
        await page.waitForSelector('.session-head .badge[data-status="completed"]', { timeout: LONG });
        passed.push('live: a new tool boundary appears without a reload');

        // ---- 6. branch from the first edit's snapshot -----------------------------------------
        await page.click(`.tl-item[data-id="${first.id}"] button.tl-branch`);
        await page.fill('#br-name', 'another way');
        await page.fill('#br-message', 'try it differently');
        await page.click('.tl-branch-form summary');
        await page.fill('#br-settings', JSON.stringify({ scenario: [{ log: 'on the branch' }] }));
        await page.click('button:text-is("Start the branch")');
        await page.waitForURL((u) => /\/sessions\/[0-9A-Z]{26}$/.test(u.pathname) && !u.pathname.endsWith(id),
                              { timeout: LONG });
        const branchId = page.url().split('/').pop();
        await page.waitForSelector('.session-head .badge[data-status="completed"]', { timeout: LONG });
        await page.waitForSelector('.event-log .log-row >> text=on the branch', { timeout: LONG });
        // its history starts with the parent's events up to the snapshot
        const inherited = await json(base, `/sessions/${branchId}/events?perPage=200&order=asc`);
        if (!inherited.items.some((e) => e.inherited)) fail('the branch has no inherited events');
        // its workspace is the snapshot: the first file, not the second
        await page.click('#tab-files');
        await page.click('button:text-is("All files")');
        await page.waitForSelector('.tree-row.file[data-path="first.txt"]', { timeout: LONG });
        if (await page.$('.tree-row.file[data-path="second.txt"]')) fail('the branch has a file made after its snapshot');
        // the parent lists it
        await page.goto(`${base}/sessions/${id}`, { waitUntil: 'load' });
        await page.click('#tab-timeline');
        await page.waitForSelector(`.tl-branches li[data-id="${branchId}"] >> text=another way`, { timeout: LONG });
        passed.push('branch from a snapshot: a new session with that workspace, listed by its parent');

        if (errors.length) fail('errors on the page:\n' + errors.join('\n'));
        passed.push('no console errors');
        for (const p of passed) console.log('ok - ' + p);
    } finally {
        if (context) await context.close();
        if (server) {
            const code = await stopServer(server.child);
            checkServerLog(server, code);
        }
        unmountUnder(tmp);
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    return passed.length;
}

main().then((n) => {
    console.log(`${n} passed, 0 failed`);
}, (e) => {
    console.error('timeline test failed: ' + (e && e.stack || e));
    console.log('0 passed, 1 failed');
    process.exit(1);
});
