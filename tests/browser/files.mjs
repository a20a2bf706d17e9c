// files.mjs — the session page's Files tab in a real browser (issue 14): a real `ah webui` with a
// workspace template, a scripted agent that changes files, waits for a prompt and changes more,
// and headless Chromium checking, as a user would:
//   1. the changed files with their status and +/- counts, as GET …/files answers them;
//   2. a file's diff side by side and unified (the agent's lines, with their line numbers);
//   3. live: the prompt makes the agent edit again; the list and the open diff follow without
//      a reload (file_edit/diff events);
//   4. the workspace tree: directories open on demand, modified files are marked, an unchanged
//      file shows its text;
//   5. an error from the API is shown as the Problem's title and detail;
//   6. no console errors.
// Screenshots go to AH_ARTIFACTS (files-split, files-unified, files-tree, files-dark).
//
//   AH_BIN=build/ah AH_ARTIFACTS=build/browser-artifacts node tests/browser/files.mjs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LONG, checkServerLog, fail, launchBrowser, startServer, stopServer,
         waitReady } from './harness.mjs';

const artifacts = process.env.AH_ARTIFACTS || path.join(os.tmpdir(), 'ah-browser-artifacts');

async function shot(page, name) {
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, name + '.png') });
}

async function json(base, p, init) {
    const r = await fetch(base + '/api/v1' + p, init);
    if (!r.ok) fail(`${p} answered ${r.status}: ${await r.text()}`);
    return r.json();
}

async function createTask(base, body) {
    const r = await fetch(base + '/api/v1/tasks', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (r.status !== 201) fail(`POST /tasks answered ${r.status}: ${await r.text()}`);
    return (await r.json()).id;
}

/** The +/- counts the list shows must be what the API says, file by file. */
async function checkCounts(page, base, id) {
    const api = await json(base, `/sessions/${id}/files?perPage=200`);
    const shown = await page.$$eval('.file-row', (els) => els.map((e) => ({
        path: e.dataset.path, status: e.dataset.status,
        plus: e.querySelector('.plus')?.textContent, minus: e.querySelector('.minus')?.textContent })));
    const want = api.items.map((f) => ({ path: f.path, status: f.status, plus: `+${f.lines_added}`,
                                         minus: `−${f.lines_removed}` }));
    if (JSON.stringify(shown) !== JSON.stringify(want))
        return `the list shows ${JSON.stringify(shown)}; the API says ${JSON.stringify(want)}`;
    return null;
}

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-files-'));
    const template = path.join(tmp, 'template');
    const files = {
        'README.md': '# Demo\n',
        'src/app.c': 'int one;\nint two;\nint three;\n',
        'gone.txt': 'to be deleted\n',
        'docs/guide.md': '# Guide\n\nRead me first.\n',
    };
    for (const [p, c] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(template, p)), { recursive: true });
        fs.writeFileSync(path.join(template, p), c);
    }
    let server = null, context = null;
    const passed = [];
    try {
        server = await startServer(tmp, 0, ['--workspace-template', template]);
        const base = `http://127.0.0.1:${server.port}`;
        await waitReady(base);
        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();
        const errors = [];
        let expect404 = false;
        page.on('pageerror', (e) => errors.push('pageerror: ' + String(e)));
        page.on('console', (m) => {
            if (m.type() !== 'error') return;
            // Chromium logs every 4xx answer: the one step 5 asks for is expected.
            if (expect404 && /status of (404|409)/.test(m.text())) return;
            errors.push(`console: ${m.text()} (${m.location()?.url || ''})`);
        });

        const id = await createTask(base, {
            prompt: 'Tidy the app', repo: { mode: 'none' }, runtime: { type: 'local' },
            agents: [{ type: 'scripted', settings: { scenario: [
                { edit: 'src/app.c', content: 'int one;\nint TWO;\nint three;\nint four;\n' },
                { delete: 'gone.txt' },
                { edit: 'notes/new.md', content: 'a new note\n' },
                { log: 'first round done' },
                { wait_prompt: true },
                { append: 'src/app.c', content: 'int live_line;\n' },
                { edit: 'notes/late.md', content: 'written after the prompt\n' },
                { log: 'second round done' },
                { wait_prompt: true },
            ] } }],
        });

        // ---- 1. the changed files, as the API lists them ---------------------------------------
        await page.goto(`${base}/sessions/${id}`, { waitUntil: 'load' });
        await page.waitForSelector('text=first round done', { timeout: LONG });
        await page.click('#tab-files');
        await page.waitForSelector('.file-row[data-path="src/app.c"][data-status="modified"]', { timeout: LONG });
        await page.waitForSelector('.file-row[data-path="gone.txt"][data-status="deleted"]', { timeout: LONG });
        await page.waitForSelector('.file-row[data-path="notes/new.md"][data-status="added"]', { timeout: LONG });
        let bad = await checkCounts(page, base, id);
        if (bad) fail(bad);
        const summary = await page.textContent('.files-summary');
        if (summary.trim() !== '3 files changed +3 −2') fail(`the summary reads "${summary}"`);
        passed.push('changed files with status and +/- counts as the API answers');

        // ---- 2. a diff, side by side and unified ----------------------------------------------
        await page.click('.file-row[data-path="src/app.c"]');
        await page.waitForSelector('.diff-pane[aria-label="Diff of src/app.c"] table.split', { timeout: LONG });
        const change = await page.$$eval('table.split tr[data-kind="change"] td.d-text', (els) => els.map((e) => e.textContent));
        if (JSON.stringify(change) !== JSON.stringify(['int two;', 'int TWO;']))
            fail(`the split change row reads ${JSON.stringify(change)}`);
        const addRight = await page.$$eval('table.split tr[data-kind="add"] td', (els) => els.map((e) => e.textContent));
        if (JSON.stringify(addRight) !== JSON.stringify(['', '', '4', 'int four;']))
            fail(`the split add row reads ${JSON.stringify(addRight)}`);
        await shot(page, 'files-split');
        await page.click('button:text-is("Unified")');
        await page.waitForSelector('table.unified', { timeout: LONG });
        const uni = await page.$$eval('table.unified tr', (els) => els.map((e) =>
            [e.className, ...[...e.querySelectorAll('td')].map((td) => td.textContent)].join('|')));
        const wantUni = ['d-hunk|@@ -1,3 +1,4 @@', 'd-context|1|1| int one;', 'd-del|2||−int two;',
                         'd-add||2|+int TWO;', 'd-context|3|3| int three;', 'd-add||4|+int four;'];
        if (JSON.stringify(uni) !== JSON.stringify(wantUni)) fail(`the unified diff reads ${JSON.stringify(uni)}`);
        await shot(page, 'files-unified');
        // A deleted file's diff: every line removed.
        await page.click('.file-row[data-path="gone.txt"]');
        await page.waitForSelector('.diff-pane[aria-label="Diff of gone.txt"] table.unified tr.d-del', { timeout: LONG });
        if (!(await page.textContent('table.unified tr.d-del')).includes('to be deleted')) fail('the deleted file\'s diff lacks its line');
        // j / k move through the changed files.
        await page.keyboard.press('j');
        await page.waitForSelector('.diff-pane[aria-label="Diff of notes/new.md"]', { timeout: LONG });
        await page.waitForSelector('.file-row.current[data-path="notes/new.md"]', { timeout: LONG });
        await page.keyboard.press('k');
        await page.waitForSelector('.diff-pane[aria-label="Diff of gone.txt"]', { timeout: LONG });
        passed.push('split and unified diffs with line numbers; j/k move through the files');

        // ---- 3. live: a prompt makes the agent edit again -------------------------------------
        await page.click('.file-row[data-path="src/app.c"]');
        await page.waitForSelector('.diff-pane[aria-label="Diff of src/app.c"] table.unified', { timeout: LONG });
        await json(base, `/sessions/${id}/prompt`, {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'more' }) });
        await page.waitForSelector('.file-row[data-path="notes/late.md"][data-status="added"]', { timeout: LONG });
        await page.waitForFunction(() => [...document.querySelectorAll('table.unified tr.d-add')]
            .some((tr) => tr.textContent.includes('int live_line;')), null, { timeout: LONG });
        // The counts follow too (the last event may land a moment after the new row).
        const deadline = Date.now() + LONG;
        while ((bad = await checkCounts(page, base, id)) && Date.now() < deadline)
            await page.waitForFunction(() => true, null, { polling: 'raf' });
        if (bad) fail('after the live edit ' + bad);
        passed.push('live: the list and the open diff follow file_edit/diff events');

        // ---- 4. the workspace tree ------------------------------------------------------------
        await page.click('button:text-is("All files")');
        await page.waitForSelector('.tree-row.dir[data-path="docs"]', { timeout: LONG });
        if (await page.$('.tree-row[data-path="gone.txt"]')) fail('the tree lists a deleted file');
        await page.click('.tree-row.dir[data-path="src"]');
        await page.waitForSelector('.tree-row.file[data-path="src/app.c"][data-modified="true"]', { timeout: LONG });
        await page.click('.tree-row.dir[data-path="docs"]');
        await page.waitForSelector('.tree-row.file[data-path="docs/guide.md"][data-modified="false"]', { timeout: LONG });
        await page.click('.tree-row.file[data-path="docs/guide.md"]');
        await page.waitForSelector('.diff-pane[aria-label="Contents of docs/guide.md"] table.content', { timeout: LONG });
        const text = await page.$$eval('table.content td.d-text', (els) => els.map((e) => e.textContent));
        if (JSON.stringify(text) !== JSON.stringify(['# Guide', '', 'Read me first.'])) fail(`the file reads ${JSON.stringify(text)}`);
        await shot(page, 'files-tree');
        // A modified file opens as its diff, and "View file" shows its text.
        await page.click('.tree-row.file[data-path="src/app.c"]');
        await page.waitForSelector('.diff-pane[aria-label="Diff of src/app.c"]', { timeout: LONG });
        await page.click('button:text-is("View file")');
        await page.waitForSelector('.diff-pane[aria-label="Contents of src/app.c"] table.content', { timeout: LONG });
        const app = await page.$$eval('table.content td.d-text', (els) => els.map((e) => e.textContent));
        if (app.at(-1) !== 'int live_line;') fail(`src/app.c reads ${JSON.stringify(app)}`);
        passed.push('workspace tree: directories on demand, modified marked, file text');
        await page.emulateMedia({ colorScheme: 'dark' });
        await page.click('button:text-is("Changes")');
        await page.click('.file-row[data-path="src/app.c"]');
        await page.click('button:text-is("Split")');
        await page.waitForSelector('table.split', { timeout: LONG });
        await shot(page, 'files-dark');
        await page.emulateMedia({ colorScheme: 'light' });

        // ---- 5. a Problem from the API, shown as its title and detail -------------------------
        // A session whose workspace never came to be (its repository cannot be cloned) has no
        // files to list: the server answers a Problem, and the tab must say what it says.
        const broken = await createTask(base, {
            prompt: 'never starts', repo: { mode: 'git', url: 'file:///nonexistent/repo.git' },
            runtime: { type: 'local' }, agents: [{ type: 'scripted', settings: { scenario: [{ log: 'x' }] } }] });
        const deadline2 = Date.now() + LONG;
        while (Date.now() < deadline2 && !['failed', 'completed'].includes((await json(base, `/sessions/${broken}`)).status))
            await page.waitForFunction(() => true, null, { polling: 'raf' });
        const r = await fetch(`${base}/api/v1/sessions/${broken}/files?perPage=200`);
        if (r.ok) fail(`GET /files of a session without a workspace answered ${r.status}`);
        const problem = await r.json();
        expect404 = true;
        await page.goto(`${base}/sessions/${broken}`, { waitUntil: 'load' });
        await page.click('#tab-files');
        await page.waitForSelector('.files-side .notice.error', { timeout: LONG });
        const shown = (await page.textContent('.files-side .notice.error')).trim();
        if (shown !== `${problem.title}: ${problem.detail}`)
            fail(`the error reads "${shown}"; the Problem is ${JSON.stringify(problem)}`);
        expect404 = false;
        passed.push(`an API error shows the Problem: "${shown}"`);

        if (errors.length) fail('errors on the page:\n' + errors.join('\n'));
        passed.push('no console errors');
        await json(base, `/sessions/${id}/stop`, {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
        for (const p of passed) console.log('ok - ' + p);
    } finally {
        if (context) await context.close();
        if (server) {
            const code = await stopServer(server.child);
            checkServerLog(server, code);
        }
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    return passed.length;
}

main().then((n) => {
    console.log(`${n} passed, 0 failed`);
}, (e) => {
    console.error('files test failed: ' + (e && e.stack || e));
    console.log('0 passed, 1 failed');
    process.exit(1);
});
